"""``nasnet-zoo publish | cards``: Hub folders with their model cards, and the committed cards and tables."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .options import ARCHITECTURE, CACHE, Command, UsageError, count


def _publish_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model",
        help="a released tag (nasnet_a_mobile.tf_in1k; no tag: the default), a zoo model with --weights, "
        "or local-dir:DIR (a folder with model.safetensors + timm config.json, e.g. a fine-tuning export)",
    )
    p.add_argument("--out", required=True, type=Path, help="the folder to write (new, or an earlier publish's)")
    g = p.add_argument_group("your own weights")
    g.add_argument("--weights", type=Path, help="a state dict in the zoo's layout, e.g. runs/x/best.safetensors")
    g.add_argument("--img-size", type=count, help="its input size (default: the model's)")
    g.add_argument("--num-classes", type=count, help="default: the file's classifier rows")
    g.add_argument("--dataset", help="Hub id of its training data (default: the model's)")
    g.add_argument("--base-model", help="what it was fine-tuned from, e.g. nasnet_a_mobile.tf_in1k")
    g = p.add_argument_group("the Hub")
    g.add_argument("--repo-id", help="ORG/NAME on the Hub: named in the card; where --push goes")
    g.add_argument("--push", action="store_true", help="create the repo and upload the folder (huggingface_hub)")
    g.add_argument("--revision", help="with --push: the branch to commit to (created if new; default main)")
    g.add_argument("--private", action="store_true", help="with --push: create the repo private")


def publish(args: argparse.Namespace) -> None:
    from ..publish import publish as write_folder
    from ..weights.hub_folder import push_hub_folder

    if (args.push or args.revision or args.private) and not (args.push and args.repo_id):
        raise UsageError("--push needs --repo-id ORG/NAME; --revision and --private go with --push")
    files = write_folder(
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


def _cards_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--check", action="store_true", help="only report stale files (exit 1 if any)")
    p.add_argument("--root", type=Path, help="the source checkout (default: the one this package runs from)")


def cards(args: argparse.Namespace) -> int:
    from ..generated import source_root, stale_files, write_all

    root = args.root or source_root()
    if args.check:
        stale = stale_files(root)
        for path in stale:
            print(f"stale: {path}")
        if stale:
            print("run `nasnet-zoo cards` (or `make cards` to re-measure too)", file=sys.stderr)
        return 1 if stale else 0
    changed = write_all(root)
    for path in changed:
        print(f"wrote {path}" if path.is_file() else f"removed {path}")
    print(f"{len(changed)} file(s) changed" if changed else "model cards and README tables are up to date")
    return 0


COMMANDS = [
    Command("publish", "a Hub-ready folder (weights, timm config, model card), optionally pushed", publish,
            _publish_arguments, (ARCHITECTURE, CACHE)),
    Command("cards", "regenerate model_cards/ and README.md's tables from the zoo table and measurements", cards,
            _cards_arguments),
]  # fmt: skip
