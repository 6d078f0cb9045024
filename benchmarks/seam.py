"""``python -m benchmarks.seam``: what the inference seam and the channels_last layout buy, in one process.

Eval (no autograd) of NASNet-A mobile at its input size: the reference model in NCHW, the reference model in
its default layout (channels_last activations, standard-layout weights), and `nasnet_zoo.fast.
optimize_for_inference` (BN folded into the convs, channels_last weights and activations) and the same folding
in NCHW. One SGD training step of the same model: NCHW, the default layout, and channels_last weights too (what
``TrainConfig.channels_last`` does). Each group is timed round-robin (`benchmarks.measure.round_robin`); the
ratios are against the reference model in its default layout, measured in the same run. Results go to
``benchmarks/results/seam.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
from datetime import datetime, timezone
from pathlib import Path

import torch

import nasnet_zoo
from nasnet_zoo.fast import optimize_for_inference

from .measure import median, round_robin, train_step_fn

RESULTS = Path(__file__).parent / "results"
DEFAULT = "reference (channels_last activations)"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def _models(model: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    default = nasnet_zoo.create_model(model, drop_path_rate=0.0).eval()
    nchw = copy.deepcopy(default)
    nchw.channels_last = False
    return default, nchw


def eval_group(model: str, batch: int, warmup: int, repeats: int) -> dict[str, float]:
    default, nchw = _models(model)
    x = torch.randn(batch, 3, default.pretrained_cfg["input_size"][-1], default.pretrained_cfg["input_size"][-1])
    models = {
        "reference NCHW": nchw,
        DEFAULT: default,
        "optimize_for_inference (BN folded, channels_last)": optimize_for_inference(default),
        "optimize_for_inference(channels_last=False)": optimize_for_inference(nchw, channels_last=False),
    }

    def run(m: torch.nn.Module) -> None:
        with torch.no_grad():
            m(x)

    wall, _ = round_robin({k: (lambda m=m: run(m)) for k, m in models.items()}, warmup, repeats, x.device)
    return {k: median(v) for k, v in wall.items()}


def train_group(model: str, batch: int, warmup: int, repeats: int) -> dict[str, float]:
    default, nchw = _models(model)
    weights_cl = copy.deepcopy(default).to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, default.pretrained_cfg["input_size"][-1], default.pretrained_cfg["input_size"][-1])
    steps = {
        "reference NCHW": train_step_fn(nchw, x, x.device),
        DEFAULT: train_step_fn(default, x, x.device),
        "channels_last activations and weights": train_step_fn(weights_cl, x, x.device),
    }
    wall, _ = round_robin(steps, warmup, repeats, x.device)
    return {k: median(v) for k, v in wall.items()}


def _table(title: str, times: dict[str, float], batch: int) -> list[str]:
    base = times[DEFAULT]
    rows = [f"### {title}", "", "| configuration | ms / batch | img/s | speed vs the default |", "|---|---|---|---|"]
    for k, t in times.items():
        rows.append(f"| {k} | {t * 1e3:.0f} | {batch / t:.1f} | {base / t:.2f}x |")
    return [*rows, ""]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="nasnet_a_mobile")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--eval-batch", type=int, default=8)
    p.add_argument("--train-batch", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    evals = eval_group(args.model, args.eval_batch, args.warmup, args.repeats)
    trains = train_group(args.model, args.train_batch, args.warmup, max(args.repeats // 2, 3))
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cpu = _cpu_name()
    command = "python -m benchmarks.seam " + " ".join(argv if argv is not None else __import__("sys").argv[1:])
    lines = [
        f"Measured {when} on {cpu} ({args.threads} thread(s), fp32, torch {torch.__version__}) with "
        f"`{command.strip()}`: medians of round-robin rounds; ratios against the default layout in the same run.",
        "",
        *_table(f"eval, {args.model}, batch {args.eval_batch}", evals, args.eval_batch),
        *_table(f"training step, {args.model}, batch {args.train_batch}", trains, args.train_batch),
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "seam.md").write_text("\n".join(lines))
    data = dict(measured=when, cpu=cpu, threads=args.threads, torch=torch.__version__, command=command.strip(),
                eval_s=evals, train_s=trains)  # fmt: skip
    (args.out / "seam.json").write_text(json.dumps(data, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
