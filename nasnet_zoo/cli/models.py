"""``nasnet-zoo list | info | predict | convert | validate | export``: the zoo's models and their weights."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..table import format_table
from .options import (
    ARCHITECTURE,
    CACHE,
    DEVICE,
    TIMM_FLAGS,
    WEIGHTS,
    WORKERS,
    Command,
    compile_in_place,
    count,
    model_kwargs,
    write_results,
)  # fmt: skip


# --- list --------------------------------------------------------------------------------------------------------
def _list_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--verify", action="store_true", help="hash cached files in full (default: header and size)")


def list_models(args: argparse.Namespace) -> None:
    from ..zoo import MODELS, describe_weights

    rows = [
        (m.name, m.title, m.paper.row if m.paper else "-", m.input_size, m.dataset, ", ".join(m.pretrained) or "-")
        for m in MODELS.values()
    ]
    print(format_table(rows, ["model", "architecture", "paper row", "size", "dataset", "pretrained tags"]))
    weights = [
        (
            f"{name}.{w['tag']}",
            w["format"],
            f"{w['source']} ({w['pin']})",
            f"{w['top1']} / {w['top5']} ({w['reported_by']})",
            w["cache"],
        )
        for name, m in MODELS.items()
        for w in (describe_weights(name, args.cache_dir, args.verify) if m.pretrained else [])
    ]
    print()
    print(format_table(weights, ["weights", "format", "source", "reported top-1/5", "cached"]))


# --- info --------------------------------------------------------------------------------------------------------
def _info_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="zoo model, optionally with a tag: nasnet_a_large, nasnet_a_large.keras_in1k")


def info(args: argparse.Namespace) -> None:
    from ..zoo import info as describe

    print(json.dumps(describe(args.model, args.cache_dir), indent=2, default=str))


# --- predict -----------------------------------------------------------------------------------------------------
def _predict_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="zoo model, optionally with a tag: nasnet_a_large, nasnet_a_large.keras_in1k")
    p.add_argument("images", nargs="+", type=Path)
    p.add_argument("--top", type=count, default=5, help="classes to show per image (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON")


def predict(args: argparse.Namespace) -> None:
    from ..predict import predict as classify

    results = classify(
        args.model, args.images, top=args.top, cache_dir=args.cache_dir, amp=args.amp,
        channels_last=args.channels_last, compile_backend=args.torchcompile,
    )  # fmt: skip
    write_results(args, results)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        print(r["image"])
        for t in r["top"]:
            print(f"  {t['probability']:7.2%}  {t['label']} ({t['index']})")


# --- convert -----------------------------------------------------------------------------------------------------
def _convert_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "source",
        choices=["timm", "keras"],
        help="layout of SRC: a timm/Cadene state dict (.pth, .safetensors) or a Keras NASNet .h5 (with or without top)",
    )
    p.add_argument("src", type=Path)
    p.add_argument("--model", required=True, help="zoo model name, e.g. nasnet_a_large")
    p.add_argument("-o", "--out", required=True, type=Path, help="output .safetensors")


def convert(args: argparse.Namespace) -> None:
    from ..zoo import template

    if args.source == "timm":
        from ..weights.convert_timm import convert_timm_file as convert_file
    else:
        from ..weights.convert_keras import convert_keras_file as convert_file
    print(f"wrote {convert_file(args.src, template(args.model), args.out)}")


# --- validate ----------------------------------------------------------------------------------------------------
def _validate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="zoo model, optionally with a tag, or a finetune export folder")
    p.add_argument("data_dir", type=Path, help="DIR/CLASS/IMAGE; ImageNet synset folders need no class map")
    p.add_argument("--class-map", type=Path, help="class folder names in output order: one per line, or JSON")
    p.add_argument("--style", choices=["tf", "timm"], default="tf", help="tf: crop 0.875 bilinear; timm: 0.911 bicubic")
    p.add_argument("--img-size", type=count, help="input size (default: the model's)")
    p.add_argument("--crop-pct", type=float, help="override the style's central crop fraction")
    p.add_argument("-b", "--batch-size", type=count, default=64)


def validate(args: argparse.Namespace) -> None:
    import torch

    from ..validation import validate as top_k_accuracy
    from ..zoo import load_model

    model, source = load_model(
        args.model, pretrained=not args.no_pretrained, weights=args.weights, cache_dir=args.cache_dir,
        **model_kwargs(args),
    )  # fmt: skip
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    compile_in_place(model, args)
    result = top_k_accuracy(
        model, args.data_dir, class_map=args.class_map, style=args.style, img_size=args.img_size,
        crop_pct=args.crop_pct, batch_size=args.batch_size, device=args.device, num_workers=args.workers,
        progress=True, precision="bf16" if args.amp else "auto",
    )  # fmt: skip
    summary = dict(model=args.model, weights=source, **result)
    print(json.dumps(summary, indent=2))
    write_results(args, summary)


# --- export ------------------------------------------------------------------------------------------------------
def _export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="zoo model, optionally with a tag, or a finetune export folder")
    p.add_argument("--format", required=True, choices=["onnx", "exported-program"])
    p.add_argument("-o", "--out", type=Path, help="output file (default MODEL.onnx / MODEL.pt2 here)")
    p.add_argument("--img-size", type=count, help="input size of the export (default: the model's)")
    p.add_argument("--batch-size", type=int, default=2, help="sample batch for tracing and the check (>= 2)")
    p.add_argument("--atol", type=float, default=1e-4, help="allowed max |exported - eager| (plus 1e-5 x max |eager|)")


def export(args: argparse.Namespace) -> None:
    from ..export import FORMATS, export_model
    from ..zoo import load_model

    out = args.out or Path(Path(args.model).name.replace(".", "_") + FORMATS[args.format])
    model, source = load_model(
        args.model, pretrained=not args.no_pretrained, weights=args.weights, cache_dir=args.cache_dir,
        **model_kwargs(args),
    )  # fmt: skip
    size = None if args.img_size is None else (model.in_chans, args.img_size, args.img_size)
    result = export_model(model, args.format, out, input_size=size, batch_size=args.batch_size, atol=args.atol)
    print(json.dumps(dict(model=args.model, weights=source, **result), indent=2))


_MODEL = (WEIGHTS, ARCHITECTURE, CACHE)
COMMANDS = [
    Command("list", "the zoo's models, their pretrained weights, sources and whether they are cached", list_models,
            _list_arguments, (CACHE,)),
    Command("info", "one model: measured params and mult-adds beside the paper's, genotype, weights", info,
            _info_arguments, (CACHE,)),
    Command("predict", "classify images with pretrained weights and their own preprocessing", predict,
            _predict_arguments, (CACHE, TIMM_FLAGS)),
    Command("convert", "convert another implementation's weights to a zoo safetensors file", convert,
            _convert_arguments),
    Command("validate", "top-1 / top-5 on an image folder (ImageNet val layout or a class map), as JSON", validate,
            _validate_arguments, (*_MODEL, DEVICE, WORKERS, TIMM_FLAGS)),
    Command("export", "export to ONNX or a torch.export program, checked against the eager model", export,
            _export_arguments, _MODEL),
]  # fmt: skip
