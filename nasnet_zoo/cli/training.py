"""``nasnet-zoo train | finetune``: the paper's recipes, and fine-tuning on your data, through the one loop."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from .options import (
    ARCHITECTURE,
    CACHE,
    DEVICE,
    TIMM_FLAGS,
    WEIGHTS,
    WORKERS,
    Command,
    count,
    fraction,
    model_kwargs,
    seed,
    write_results,
)  # fmt: skip


def _run_folder_arguments(p: argparse.ArgumentParser) -> None:
    """What to do with an --out that holds an earlier run, and how much to print."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    g.add_argument("--overwrite", action="store_true", help="start afresh in --out, replacing the run there")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no line per epoch")


NPROC = argparse.ArgumentParser(add_help=False)
NPROC.add_argument(
    "--nproc", type=count, default=1,
    help="data-parallel replicas on this machine (one per GPU): runs this command under torchrun --standalone "
    "--nproc-per-node N; --batch-size is the global batch. Under your own torchrun, leave it out",
)  # fmt: skip


def _as_replicas(args: argparse.Namespace) -> bool:
    """With ``--nproc N > 1`` outside torchrun: run this very command line on N local replicas; True when done."""
    from ..train import distributed, launch

    if args.nproc == 1 or distributed.under_torchrun():
        return False
    argv, rest = [], list(args.argv)
    while rest:
        token = rest.pop(0)
        if token == "--nproc":
            rest.pop(0)
        elif not token.startswith("--nproc="):
            argv.append(token)
    launch.launch(["-m", "nasnet_zoo.cli", *argv], args.nproc)
    return True


def _timm_settings(args: argparse.Namespace) -> dict[str, object]:
    """`TrainConfig` changes of timm's ``--amp`` (bf16 autocast, on CPU too) and ``--channels-last``."""
    return dict(precision="bf16" if args.amp else None, channels_last=True if args.channels_last else None)


def _train_arguments(p: argparse.ArgumentParser) -> None:
    from ..train import RECIPES

    p.add_argument("recipe", choices=list(RECIPES), help="one of the paper's training runs")
    p.add_argument(
        "--data-dir", required=True, type=Path, help="cifar10: holds cifar-10-batches-py/; imagenet: train/ val/"
    )
    p.add_argument("--model", help="zoo model to train (default: the recipe's), e.g. nasnet_cifar with --genotype")
    p.add_argument("--epochs", type=count, help="train for E epochs instead of the recipe's")
    p.add_argument(
        "-b", "--batch-size", type=count, help="rescale the recipe to this batch (lr linear, EMA horizon kept)"
    )
    p.add_argument("--out", type=Path, help="run folder: checkpoints, metrics.jsonl, curves.png (runs/train-RECIPE)")
    _run_folder_arguments(p)
    p.add_argument("--download", action="store_true", help="cifar10: download the dataset if absent (online)")


def train(args: argparse.Namespace) -> None:
    from ..train import distributed, run_recipe

    if _as_replicas(args):
        return

    out = args.out or Path("runs") / f"train-{args.recipe}"
    result = run_recipe(
        args.recipe, args.data_dir, model=args.model, epochs=args.epochs, batch_size=args.batch_size, out_dir=out,
        resume=args.resume, overwrite=args.overwrite, download=args.download, device=args.device,
        num_workers=args.workers, progress=True, quiet=args.quiet, compile_backend=args.torchcompile,
        config_changes={k: v for k, v in _timm_settings(args).items() if v is not None}, **model_kwargs(args),
    )  # fmt: skip
    summary = dict(out=str(out), epochs=len(result.history), steps=result.steps, seconds=round(result.seconds, 1))
    summary.update(final_val_acc=result.final_val_acc, best_val_acc=result.best_val_acc, best_epoch=result.best_epoch)
    if distributed.is_main():
        print(json.dumps(summary, indent=2))
        write_results(args, summary)


def _finetune_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="zoo model (with a tag: nasnet_a_mobile.tf_in1k) or a finetune export folder")
    p.add_argument("data", help="'digits', or a folder with train/ and val/ class folders, or class folders only")
    p.add_argument(
        "--out", type=Path, help="run folder (default runs/finetune-MODEL-DATA); the model goes to OUT/model"
    )
    p.add_argument("--freeze-backbone", action="store_true", help="train the new head only (BN statistics fixed)")
    p.add_argument("--backbone-lr-scale", type=fraction, default=1.0, help="backbone lr = S x lr (group_matcher)")
    p.add_argument("--patience", type=count, help="stop after N epochs without a better validation accuracy")
    g = p.add_argument_group("training (default: 10 epochs of SGD, momentum 0.9, cosine lr 0.05, batch 32)")
    g.add_argument("--epochs", type=count)
    g.add_argument("-b", "--batch-size", type=count)
    g.add_argument("--lr", type=float, help="peak learning rate")
    g.add_argument("--weight-decay", type=float, help="L2 on conv/FC weights (default 5e-4)")
    g.add_argument("--label-smoothing", "--smoothing", type=float, help="default 0.1")
    g.add_argument(
        "--ema-decay", "--model-ema-decay", type=float, help="score and export an EMA of the weights (e.g. 0.999)"
    )
    g.add_argument("--drop-path", type=fraction, help="maximum drop-path probability (default: the model's)")
    g.add_argument("--seed", type=seed, help="training seed (default 0)")
    g = p.add_argument_group("data")
    g.add_argument("--img-size", type=count, help="training and evaluation input size (default: the model's)")
    g.add_argument("--eval-style", choices=["tf", "timm"], default="tf", help="validation preprocessing of folders")
    g.add_argument("--val-fraction", type=fraction, default=0.25, help="split off per class when there is no val/")
    g.add_argument("--split-seed", type=seed, default=0)
    _run_folder_arguments(p)


def finetune(args: argparse.Namespace) -> None:
    from ..finetune import FINETUNE_CONFIG
    from ..finetune import finetune as run
    from ..train import distributed

    if _as_replicas(args):
        return

    settings = dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay)
    settings.update(label_smoothing=args.label_smoothing, ema_decay=args.ema_decay, seed=args.seed)
    settings.update(_timm_settings(args))
    config = dataclasses.replace(FINETUNE_CONFIG, **{k: v for k, v in settings.items() if v is not None})
    kwargs = model_kwargs(args)
    if args.drop_path is not None:
        kwargs["drop_path_rate"] = args.drop_path
    out = args.out or Path("runs") / f"finetune-{Path(args.model).name}-{Path(args.data).name}"
    result = run(
        args.model, args.data, out, config=config, pretrained=not args.no_pretrained, weights=args.weights,
        cache_dir=args.cache_dir, freeze_backbone=args.freeze_backbone, backbone_lr_scale=args.backbone_lr_scale,
        patience=args.patience, img_size=args.img_size, eval_style=args.eval_style, val_fraction=args.val_fraction,
        split_seed=args.split_seed, resume=args.resume, overwrite=args.overwrite, device=args.device,
        num_workers=args.workers, progress=True, quiet=args.quiet, compile_backend=args.torchcompile, **kwargs,
    )  # fmt: skip
    if distributed.is_main():
        print(json.dumps(result.summary(), indent=2))
        write_results(args, result.summary())


COMMANDS = [
    Command("train", "train with one of the paper's recipes (cifar10, imagenet-mobile, imagenet-large)", train,
            _train_arguments, (ARCHITECTURE, DEVICE, WORKERS, NPROC, TIMM_FLAGS)),
    Command("finetune", "fine-tune a model on digits or an image folder; export the best epoch", finetune,
            _finetune_arguments, (WEIGHTS, ARCHITECTURE, CACHE, DEVICE, WORKERS, NPROC, TIMM_FLAGS)),
]  # fmt: skip
