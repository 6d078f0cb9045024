"""The ``nasnet-zoo`` command: parses arguments, calls the layers below, prints. Nothing imports it."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .errors import NasnetZooError
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


def _model_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """`create_model` arguments from the shared model options (those given)."""
    given = dict(genotype=args.genotype, num_cells=args.num_cells, filters=args.filters, in_chans=args.in_chans)
    return {k: v for k, v in given.items() if v is not None}


def _log_to_stderr() -> None:
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("nasnet_zoo").setLevel(logging.INFO)


def cmd_finetune(args: argparse.Namespace) -> int:
    import dataclasses

    from .finetune import FINETUNE_CONFIG, finetune
    from .weights import WeightsError

    _log_to_stderr()
    settings = dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay)
    settings.update(label_smoothing=args.label_smoothing, ema_decay=args.ema_decay, seed=args.seed)
    config = dataclasses.replace(FINETUNE_CONFIG, **{k: v for k, v in settings.items() if v is not None})
    kwargs = _model_kwargs(args)
    if args.drop_path is not None:
        kwargs["drop_path_rate"] = args.drop_path
    out = args.out or Path("runs") / f"finetune-{Path(args.model).name}-{Path(args.data).name}"
    try:
        result = finetune(
            args.model, args.data, out, config=config, pretrained=not args.no_pretrained, weights=args.weights,
            cache_dir=args.cache_dir, freeze_backbone=args.freeze_backbone, backbone_lr_scale=args.backbone_lr_scale,
            patience=args.patience, img_size=args.img_size, eval_style=args.eval_style,
            val_fraction=args.val_fraction, split_seed=args.split_seed, resume=args.resume, device=args.device,
            num_workers=args.workers, progress=True, **kwargs,
        )  # fmt: skip
    except (WeightsError, FileNotFoundError, FileExistsError, ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result.summary(), indent=2))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from .finetune import load_model, validate
    from .weights import WeightsError

    _log_to_stderr()
    try:
        model, source = load_model(
            args.model, pretrained=not args.no_pretrained, weights=args.weights, cache_dir=args.cache_dir,
            **_model_kwargs(args),
        )  # fmt: skip
        result = validate(
            model, args.data_dir, class_map=args.class_map, style=args.style, img_size=args.img_size,
            crop_pct=args.crop_pct, batch_size=args.batch_size, device=args.device, num_workers=args.workers,
            progress=True,
        )  # fmt: skip
    except (WeightsError, FileNotFoundError, ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(dict(model=args.model, weights=source, **result), indent=2))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import FORMATS, ExportCheckError, export_model
    from .finetune import load_model
    from .weights import WeightsError

    _log_to_stderr()
    out = args.out or Path(Path(args.model).name.replace(".", "_") + FORMATS[args.format])
    try:
        model, source = load_model(
            args.model, pretrained=not args.no_pretrained, weights=args.weights, cache_dir=args.cache_dir,
            **_model_kwargs(args),
        )  # fmt: skip
        size = None if args.img_size is None else (model.in_chans, args.img_size, args.img_size)
        result = export_model(model, args.format, out, input_size=size, batch_size=args.batch_size, atol=args.atol)
    except (WeightsError, ExportCheckError, FileNotFoundError, ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(dict(model=args.model, weights=source, **result), indent=2))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo()


def cmd_search(args: argparse.Namespace) -> int:
    from .search.loop import SearchConfig, run_search
    from .search.report import SUMMARY_HEADERS, load_runs, summary_rows

    try:
        config = SearchConfig(
            preset=args.preset, algo=args.algo, seed=args.seed, budget=args.budget, workers=args.workers,
            backend=args.backend, out=args.out, resume=args.resume, max_minutes=args.max_minutes,
            data_dir=args.data_dir, ray_address=args.ray_address, gpus_per_child=args.gpus_per_child,
        )  # fmt: skip
        result = run_search(config, progress=True)
    except (NasnetZooError, ValueError, FileExistsError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_table(summary_rows(load_runs(args.out)), SUMMARY_HEADERS))
    for note in result.notes:
        print(f"note: {note}")
    best = result.best
    if best is not None:
        print(f"\nbest child {best['hash']} (search reward {best['reward']:.4f}) -> {args.out / 'best.json'}")
    print(f"journal: {result.run_dir / 'journal.jsonl'}; plot: {args.out / 'search.png'}")
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from .search.retrain import retrain

    try:
        rows = retrain(
            args.out, args.top_k, args.epochs, args.workers, args.backend, progress=True, data_dir=args.data_dir,
            ray_address=args.ray_address, gpus_per_child=args.gpus_per_child,
        )  # fmt: skip
    except (NasnetZooError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    table = [
        (i + 1, r["hash"], r["run"], f"{r['search_reward']:.4f}", "-" if r["reward"] is None else f"{r['reward']:.4f}")
        for i, r in enumerate(rows)
    ]
    headers = ["rank", "child", "run", "search reward", f"validation after {rows[0]['epochs']} epochs"]
    print(format_table(table, headers))
    test = "-" if rows[0]["test"] is None else f"{rows[0]['test']:.4f}"
    print(f"\nfinal cell (chosen on validation) -> {args.out / 'final.json'}; its held-out test score: {test}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    root = Path(__file__).resolve().parent.parent
    if not (root / "benchmarks" / "run.py").is_file():
        print("error: benchmarks/ is part of the source checkout; clone the repository to run it", file=sys.stderr)
        return 2
    sys.path.insert(0, str(root))
    from benchmarks.run import main as bench

    return bench(args.extra)


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

    def model_options(sp: argparse.ArgumentParser) -> None:
        g = sp.add_argument_group("model", "weights and architecture (MODEL may also be a finetune export folder)")
        g.add_argument("--weights", help="weights instead of the tag's: a .safetensors file, or hf-hub:ORG/NAME@REV")
        g.add_argument("--no-pretrained", action="store_true", help="random initialisation, on purpose")
        g.add_argument("--cache-dir", type=Path, help="weights cache folder (default: huggingface_hub's, torch.hub's)")
        g.add_argument("--genotype", help="a searched cell (JSON file) for nasnet_cifar / nasnet_imagenet")
        g.add_argument("--num-cells", type=int, help="override the model's number of normal cells (3 N)")
        g.add_argument("--filters", type=int, help="override the model's filter count")
        g.add_argument("--in-chans", type=int, help="input channels (default 3)")

    sp = add("finetune", cmd_finetune, "fine-tune a model on digits or an image folder; export the best epoch")
    sp.add_argument("model", help="zoo model (with a tag: nasnet_a_mobile.tf_in1k) or a finetune export folder")
    sp.add_argument("data", help="'digits', or a folder with train/ and val/ class folders, or class folders only")
    sp.add_argument(
        "--out", type=Path, help="run folder (default runs/finetune-MODEL-DATA); the model goes to OUT/model"
    )
    sp.add_argument("--freeze-backbone", action="store_true", help="train the new head only (BN statistics fixed)")
    sp.add_argument("--backbone-lr-scale", type=float, default=1.0, help="backbone lr = S x lr (group_matcher)")
    sp.add_argument("--patience", type=int, help="stop after N epochs without a better validation accuracy")
    sp.add_argument("--epochs", type=int, help="default 10")
    sp.add_argument("--batch-size", type=int, help="default 32")
    sp.add_argument("--lr", type=float, help="peak learning rate (SGD momentum 0.9, cosine; default 0.05)")
    sp.add_argument("--weight-decay", type=float, help="L2 on conv/FC weights (default 5e-4)")
    sp.add_argument("--label-smoothing", type=float, help="default 0.1")
    sp.add_argument("--ema-decay", type=float, help="score and export an EMA of the weights (e.g. 0.999)")
    sp.add_argument("--drop-path", type=float, help="maximum drop-path probability (default: the model's)")
    sp.add_argument("--img-size", type=int, help="training and evaluation input size (default: the model's)")
    sp.add_argument("--eval-style", choices=["tf", "timm"], default="tf", help="validation preprocessing of folders")
    sp.add_argument("--val-fraction", type=float, default=0.25, help="split off per class when there is no val/")
    sp.add_argument("--split-seed", type=int, default=0)
    sp.add_argument("--seed", type=int, help="training seed (default 0)")
    sp.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    sp.add_argument("--device", help="cuda, cpu, ... (default: cuda when available)")
    sp.add_argument("--workers", type=int, default=4, help="data loading processes for image folders (default 4)")
    model_options(sp)

    sp = add("validate", cmd_validate, "top-1 / top-5 on an image folder (ImageNet val layout or a class map), JSON")
    sp.add_argument("model", help="zoo model, optionally with a tag, or a finetune export folder")
    sp.add_argument("data_dir", type=Path, help="DIR/CLASS/IMAGE; ImageNet synset folders need no class map")
    sp.add_argument("--class-map", type=Path, help="class folder names in output order: one per line, or JSON")
    sp.add_argument(
        "--style", choices=["tf", "timm"], default="tf", help="tf: crop 0.875 bilinear; timm: 0.911 bicubic"
    )
    sp.add_argument("--img-size", type=int, help="input size (default: the model's)")
    sp.add_argument("--crop-pct", type=float, help="override the style's central crop fraction")
    sp.add_argument("--batch-size", type=int, default=64)
    sp.add_argument("--device", help="cuda, cpu, ... (default: cuda when available)")
    sp.add_argument("--workers", type=int, default=4, help="data loading processes (default 4)")
    model_options(sp)

    sp = add("export", cmd_export, "export to ONNX or a torch.export program, checked against the eager model")
    sp.add_argument("model", help="zoo model, optionally with a tag, or a finetune export folder")
    sp.add_argument("--format", required=True, choices=["onnx", "exported-program"])
    sp.add_argument("-o", "--out", type=Path, help="output file (default MODEL.onnx / MODEL.pt2 here)")
    sp.add_argument("--img-size", type=int, help="input size of the export (default: the model's)")
    sp.add_argument("--batch-size", type=int, default=2, help="sample batch for tracing and the check (>= 2)")
    sp.add_argument("--atol", type=float, default=1e-4, help="allowed max |exported - eager| (plus 1e-5 x max |eager|)")
    model_options(sp)
    add("demo", cmd_demo, "the end-to-end story on bundled data")
    sp = add("search", cmd_search, "the paper's RL cell search (or a baseline), resumable, from a laptop to Ray")
    sp.add_argument(
        "--preset",
        default="cpu-digits",
        choices=["nasnet", "cpu-digits", "synthetic"],
        help="nasnet: the paper's protocol on CIFAR-10 for a GPU cluster; cpu-digits: real children on "
        "bundled digits, minutes on 2 cores; synthetic: a known-optimum reward for testing",
    )
    sp.add_argument("--algo", default="ppo", choices=["ppo", "reinforce", "random", "evolution"])
    sp.add_argument("--budget", type=int, help="children to sample (default: the preset's)")
    sp.add_argument("--workers", type=int, help="children in flight (default: the preset's)")
    sp.add_argument("--backend", choices=["serial", "process", "ray"], help="default: the preset's")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--out", type=Path, required=True, help="folder of the search; one subfolder per algo and seed")
    sp.add_argument("--resume", action="store_true", help="continue the run in --out after a stop or a crash")
    sp.add_argument("--max-minutes", type=float, help="wall-time budget (children in flight resume later)")
    sp.add_argument("--data-dir", help="cifar10: a folder holding torchvision's cifar-10-batches-py")
    sp.add_argument("--ray-address", help="join this Ray cluster (e.g. auto) instead of starting a local Ray")
    sp.add_argument("--gpus-per-child", type=float, default=0.0, help="ray: GPUs each child requests")
    sp = add("retrain", cmd_retrain, "train a search's top-k children longer and pick the final cell")
    sp.add_argument("out", type=Path, help="the --out folder of a search")
    sp.add_argument("--top-k", type=int, help="children to retrain (default: the preset's; the paper: 250)")
    sp.add_argument("--epochs", type=int, help="default: the preset's")
    sp.add_argument("--workers", type=int)
    sp.add_argument("--backend", choices=["serial", "process", "ray"])
    sp.add_argument("--data-dir", help="cifar10: where the data lives on this machine (default: the search's)")
    sp.add_argument("--ray-address", help="join this Ray cluster (e.g. auto) instead of starting a local Ray")
    sp.add_argument("--gpus-per-child", type=float, default=0.0, help="ray: GPUs each child requests")
    sp = sub.add_parser(
        "bench", add_help=False, help="speed beside timm and Cadene (python -m benchmarks.run; --help for options)"
    )
    sp.set_defaults(fn=cmd_bench, passthrough=True)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passthrough", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
