"""The ``nasnet-zoo`` command: parses arguments, calls the layers below, prints. Nothing imports it."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .table import format_table


# --- commands -------------------------------------------------------------------------------------------------
def cmd_list(args: argparse.Namespace) -> int:
    from .zoo import MODELS

    rows = [
        (
            m.name,
            m.title,
            m.paper.row if m.paper else "-",
            m.input_size,
            m.dataset,
            ", ".join(m.pretrained) or "-",
        )
        for m in MODELS.values()
    ]
    print(format_table(rows, ["model", "architecture", "paper row", "size", "dataset", "pretrained tags"]))
    print()
    print(format_table(_weights_rows(args.cache_dir), ["weights", "format", "source", "reported top-1/5", "cached"]))
    return 0


def _weights_rows(cache_dir: Path | None) -> list[tuple[str, ...]]:
    from .weights import describe_weights
    from .zoo import MODELS

    return [
        (
            f"{name}.{w['tag']}",
            w["format"],
            w["hf_hub_id"] or f"{w['url']} (md5 {w['md5']})",
            f"{w['top1']} / {w['top5']} ({w['reported_by']})",
            "yes" if w["cached"] else "no",
        )
        for name, m in MODELS.items()
        for w in (describe_weights(name, cache_dir) if m.pretrained else [])
    ]


def cmd_info(args: argparse.Namespace) -> int:
    from .weights import describe_weights
    from .zoo import MODELS, measure

    if args.model not in MODELS:
        print(f"unknown model {args.model!r}; see `nasnet-zoo list`", file=sys.stderr)
        return 2
    m = MODELS[args.model]
    info = measure(args.model)
    info.update(genotype=m.genotype.to_dict(), config=vars(m.config) if hasattr(m.config, "__dict__") else None)
    info["pretrained"] = describe_weights(args.model, args.cache_dir)
    print(json.dumps(info, indent=2, default=str))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .weights import WeightsError
    from .weights.predict import predict

    try:
        results = predict(args.model, args.images, top=args.top, cache_dir=args.cache_dir)
    except (WeightsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for r in results:
        print(r["image"])
        for t in r["top"]:
            print(f"  {t['probability']:7.2%}  {t['label']} ({t['index']})")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from .weights import WeightsError

    try:
        if args.source == "timm":
            from .weights.convert_timm import convert_timm_file

            out = convert_timm_file(args.src, args.model, args.out)
        elif args.source == "keras":
            from .weights.convert_keras import convert_keras_file

            out = convert_keras_file(args.src, args.model, args.out)
        else:  # pragma: no cover - argparse restricts the choices
            raise ValueError(args.source)
    except WeightsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .train import run_recipe

    overrides = dict(genotype=args.genotype, num_cells=args.num_cells, filters=args.filters)
    out = args.out or Path("runs") / f"train-{args.recipe}"
    try:
        result = run_recipe(
            args.recipe,
            args.data_dir,
            model=args.model,
            epochs=args.epochs,
            batch_size=args.batch_size,
            out_dir=out,
            resume=args.resume,
            download=args.download,
            device=args.device,
            num_workers=args.workers,
            progress=True,
            **{k: v for k, v in overrides.items() if v is not None},
        )
    except (FileNotFoundError, FileExistsError, ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = dict(out=str(out), epochs=len(result.history), steps=result.steps, seconds=round(result.seconds, 1))
    summary.update(final_val_acc=result.final_val_acc, best_val_acc=result.best_val_acc, best_epoch=result.best_epoch)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from .publish import publish
    from .weights import WeightsError
    from .weights.export import push_hub_folder

    if (args.push or args.revision or args.private) and not (args.push and args.repo_id):
        print("error: --push needs --repo-id ORG/NAME; --revision and --private go with --push", file=sys.stderr)
        return 2
    try:
        files = publish(
            args.model, args.out, weights=args.weights, genotype=args.genotype, num_cells=args.num_cells,
            filters=args.filters, img_size=args.img_size, num_classes=args.num_classes, dataset=args.dataset,
            base_model=args.base_model, repo_id=args.repo_id, cache_dir=args.cache_dir,
        )  # fmt: skip
        for path in files:
            print(f"wrote {path}")
        if args.push:
            commit = push_hub_folder(args.out, args.repo_id, revision=args.revision, private=args.private)
            print(f"pushed to {args.repo_id} in commit {commit.oid}: {commit.commit_url}")
            print(f'pin it in the zoo table: Weights("zoo", hf_hub_id="{args.repo_id}@{commit.oid}", ...)')
    except (WeightsError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def cmd_cards(args: argparse.Namespace) -> int:
    from .cards import source_root, stale_files, write_all

    try:
        root = args.root or source_root()
        if args.check:
            stale = stale_files(root)
            for path in stale:
                print(f"stale: {path}")
            if stale:
                print("run `nasnet-zoo cards` (or `make cards` to re-measure too)", file=sys.stderr)
            return 1 if stale else 0
        changed = write_all(root)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for path in changed:
        print(f"wrote {path}" if path.is_file() else f"removed {path}")
    print(f"{len(changed)} file(s) changed" if changed else "model cards and README tables are up to date")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo()


# --- parser ---------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nasnet-zoo", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(fn=fn)
        return sp

    cache = dict(type=Path, default=None, help="weights cache folder (default: huggingface_hub's and torch.hub's)")
    sp = add("list", cmd_list, "the zoo's models, their pretrained weights, sources and whether they are cached")
    sp.add_argument("--cache-dir", **cache)
    sp = add("info", cmd_info, "one model: measured params and mult-adds beside the paper's, genotype, weights")
    sp.add_argument("model")
    sp.add_argument("--cache-dir", **cache)
    sp = add("predict", cmd_predict, "classify images with pretrained weights and their own preprocessing")
    sp.add_argument("model", help="zoo model, optionally with a tag: nasnet_a_large, nasnet_a_large.keras_in1k")
    sp.add_argument("images", nargs="+", type=Path)
    sp.add_argument("--top", type=int, default=5)
    sp.add_argument("--json", action="store_true", help="print JSON")
    sp.add_argument("--cache-dir", **cache)
    sp = add("convert", cmd_convert, "convert another implementation's weights to a zoo safetensors file")
    sp.add_argument(
        "source",
        choices=["timm", "keras"],
        help="layout of SRC: a timm/Cadene state dict (.pth, .safetensors) or a Keras NASNet .h5 (with or without top)",
    )
    sp.add_argument("src", type=Path)
    sp.add_argument("--model", required=True, help="zoo model name, e.g. nasnet_a_large")
    sp.add_argument("-o", "--out", required=True, type=Path, help="output .safetensors")
    sp = add("train", cmd_train, "train with one of the paper's recipes (cifar10, imagenet-mobile, imagenet-large)")
    sp.add_argument("recipe", help="cifar10 | imagenet-mobile | imagenet-large")
    sp.add_argument(
        "--data-dir", required=True, type=Path, help="cifar10: holds cifar-10-batches-py/; imagenet: train/ val/"
    )
    sp.add_argument("--model", help="zoo model to train (default: the recipe's), e.g. nasnet_cifar with --genotype")
    sp.add_argument("--genotype", help="a searched cell (JSON file) for nasnet_cifar / nasnet_imagenet")
    sp.add_argument("--num-cells", type=int, help="override the model's number of normal cells (3 N)")
    sp.add_argument("--filters", type=int, help="override the model's filter count")
    sp.add_argument("--epochs", type=int, help="train for E epochs instead of the recipe's")
    sp.add_argument("--batch-size", type=int, help="rescale the recipe to this batch (lr linear, EMA horizon kept)")
    sp.add_argument("--out", type=Path, help="run folder: checkpoints, metrics.jsonl, curves.png (runs/train-RECIPE)")
    sp.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    sp.add_argument("--download", action="store_true", help="cifar10: download the dataset if absent (online)")
    sp.add_argument("--device", help="cuda, cpu, ... (default: cuda when available)")
    sp.add_argument("--workers", type=int, default=4, help="data loading processes (default 4)")
    sp = add("publish", cmd_publish, "a Hub-ready folder (weights, timm config, model card), optionally pushed")
    sp.add_argument(
        "model",
        help="a released tag (nasnet_a_mobile.tf_in1k; no tag: the default), a zoo model with --weights, "
        "or local-dir:DIR (a folder with model.safetensors + timm config.json, e.g. a fine-tuning export)",
    )
    sp.add_argument("--out", required=True, type=Path, help="the folder to write (new, or an earlier publish's)")
    sp.add_argument("--weights", type=Path, help="your own weights in the zoo's layout, e.g. runs/x/best.safetensors")
    sp.add_argument("--genotype", help="with --weights: the searched cell (JSON) of nasnet_cifar / nasnet_imagenet")
    sp.add_argument("--num-cells", type=int, help="with --weights: the normal cells it was trained with")
    sp.add_argument("--filters", type=int, help="with --weights: the filter count it was trained with")
    sp.add_argument("--img-size", type=int, help="with --weights: its input size (default: the model's)")
    sp.add_argument("--num-classes", type=int, help="with --weights: default, the file's classifier rows")
    sp.add_argument("--dataset", help="with --weights: Hub id of its training data (default: the model's)")
    sp.add_argument("--base-model", help="with --weights: what it was fine-tuned from, e.g. nasnet_a_mobile.tf_in1k")
    sp.add_argument("--repo-id", help="ORG/NAME on the Hub: named in the card; where --push goes")
    sp.add_argument("--push", action="store_true", help="create the repo and upload the folder (huggingface_hub)")
    sp.add_argument("--revision", help="with --push: the branch to commit to (created if new; default main)")
    sp.add_argument("--private", action="store_true", help="with --push: create the repo private")
    sp.add_argument("--cache-dir", **cache)
    sp = add("cards", cmd_cards, "regenerate model_cards/ and README.md's tables from the zoo table and measurements")
    sp.add_argument("--check", action="store_true", help="only report stale files (exit 1 if any)")
    sp.add_argument("--root", type=Path, help="the source checkout (default: the one this package runs from)")
    add("demo", cmd_demo, "the end-to-end story on bundled data")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
