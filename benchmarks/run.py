"""``python -m benchmarks.run``: nasnet-zoo's speed beside timm's and Cadene's NASNet ports, in one process.

1. The matmul peak of this machine (fp32 on CPU, bf16 on CUDA): the yardstick for GFLOP/s, timed inside every
   group below as one more member, so it sees the same load as the models it is compared with.
2. Eval throughput at batch 1 and 8, mobile (224) and large (331): ours (default layout, channels_last), ours
   in NCHW, ours under torch.compile; timm ``nasnetalarge`` and Cadene, each as released (NCHW) and in
   channels_last. Achieved GFLOP/s use our mult-add count (`nasnet_zoo.complexity`; 1 MAC = 2 FLOPs).
3. Training-step throughput (mobile batch 16, large batch 2): ours with and without gradient checkpointing,
   Cadene in both layouts.
4. Peak training memory of the same configurations, each in a fresh process (see `benchmarks.measure`).
5. The cell search's children per minute (``benchmarks/search.py``).
6. The issue's targets (ratios within this run), met or not.

Each group of configurations is timed round-robin (`benchmarks.measure.round_robin`): warm-up rounds, then the
median of the timed rounds. CPU runs use ``--threads`` threads (2 by default) and fp32; with a GPU the same
command runs on CUDA under bf16 autocast. Results go to ``benchmarks/results/<device>.md`` and ``.json``; a
full CPU run also refreshes the table in README.md. ``--quick`` (a smoke test: mobile only, fewer rounds, no
torch.compile, results under runs/bench-quick/) takes a few minutes.

Absolute numbers move with the load of a shared machine; the ratios within one run are the result.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import torch

from nasnet_zoo.complexity import count_mult_adds
from nasnet_zoo.zoo import create_model

from . import measure
from .measure import Matmul, autocast, median, peak_train_memory, round_robin, train_step_fn
from .models import MODELS, Config, eval_configs, train_configs

ROOT = Path(__file__).resolve().parent.parent
TRAIN_BATCH = {"mobile": 16, "large": 2}
README_BLOCK, README_COMMAND = "benchmarks", "python -m benchmarks.run"


def peers_available() -> bool:
    try:
        import pretrainedmodels  # noqa: F401
    except ImportError:
        return False
    return True


def mult_adds(model: str) -> int:
    name, size = MODELS[model]
    return count_mult_adds(create_model(name), size)


# --- sections -------------------------------------------------------------------------------------------------
MATMUL = "matmul (yardstick)"


def eval_section(model: str, args: argparse.Namespace, device: torch.device, mm: Matmul) -> list[dict[str, Any]]:
    configs = [c for c in eval_configs(model, compiled=not args.no_compile) if not c.peer or args.peers]
    macs = mult_adds(model)
    built = {c: c.build(device).eval() for c in configs if not c.compiled}
    rows = []
    for batch in args.eval_batches:
        gen = torch.Generator().manual_seed(0)
        inputs = {c: c.input(batch, device, gen) for c in configs}
        compile_s: dict[Config, float] = {}
        with torch.no_grad(), autocast(device):
            for c in configs:
                if c.compiled:  # a fresh compile per batch size (dynamic=False); its first call compiles
                    built[c] = c.build(device).eval()
                    t0 = time.perf_counter()
                    built[c](inputs[c])
                    compile_s[c] = time.perf_counter() - t0
            # Our configurations hold the same weights: how far each is from the default, relative to its scale.
            ours = {c: built[c](inputs[c]).float() for c in configs if not c.peer}
            ref = next(out for c, out in ours.items() if c.label == "ours")
            rel = {c: ((out - ref).abs().max() / ref.abs().max()).item() for c, out in ours.items()}
            fns = {c.label: partial(built[c], inputs[c]) for c in configs} | {MATMUL: mm}
            times, cpu = round_robin(fns, args.warmup, args.repeats, device, args.min_seconds)
        peak = mm.gflops(median(times[MATMUL]))
        for c in configs:
            t = median(times[c.label])
            gflops = 2 * macs * batch / t / 1e9
            rows.append(
                dict(
                    model=model, batch=batch, config=c.label, impl=c.impl, peer=c.peer, seconds=t,
                    seconds_all=times[c.label], cpu_seconds=median(cpu[c.label]), img_s=batch / t,
                    gflops=gflops, pct_peak=100 * gflops / peak, matmul_gflops=peak,
                    compile_s=compile_s.get(c), rel_diff_vs_ours=rel.get(c),
                )
            )  # fmt: skip
        _ratios(rows, model, batch)
        title = f"eval, {model}, batch {batch} (matmul {peak:.0f} GFLOP/s)"
        _print_rows([r for r in rows if r["batch"] == batch], title)
    del built
    gc.collect()
    return rows


def _ratios(rows: list[dict[str, Any]], model: str, batch: int) -> None:
    """Each row's throughput over the fastest peer configuration's (same model and batch)."""
    group = [r for r in rows if r["model"] == model and r["batch"] == batch]
    peers = [r["img_s"] for r in group if r["peer"]]
    for r in group:
        r["vs_fastest_peer"] = r["img_s"] / max(peers) if peers else None


def train_section(model: str, args: argparse.Namespace, device: torch.device, mm: Matmul) -> list[dict[str, Any]]:
    configs = [c for c in train_configs(model) if not c.peer or args.peers]
    batch = TRAIN_BATCH[model]
    macs = mult_adds(model)
    gen = torch.Generator().manual_seed(0)
    steps = {}
    for c in configs:
        steps[c.label] = train_step_fn(c.build(device), c.input(batch, device, gen), device)
    times, cpu = round_robin(steps | {MATMUL: mm}, args.warmup, args.repeats, device, args.min_seconds)
    peak = mm.gflops(median(times[MATMUL]))
    del steps
    gc.collect()
    rows = []
    for c in configs:
        t = median(times[c.label])
        gflops = 3 * 2 * macs * batch / t / 1e9  # backward ~ 2x forward
        mem: dict[str, float] = {}
        if not args.no_memory:
            mem = peak_train_memory(c, batch, device, args.threads, steps=1 if args.quick else 3)
        rows.append(
            dict(
                model=model, batch=batch, config=c.label, impl=c.impl, peer=c.peer, grad_ckpt=c.grad_ckpt,
                seconds=t, seconds_all=times[c.label], cpu_seconds=median(cpu[c.label]), img_s=batch / t, gflops=gflops,
                pct_peak=100 * gflops / peak, matmul_gflops=peak, peak_mib=mem.get("peak_mib"),
                saved_mib=mem.get("saved_mib"),
            )
        )  # fmt: skip
    cadene = {r["config"]: r for r in rows if r["impl"] == "cadene"}
    for r in rows:
        r["vs_cadene"] = r["img_s"] / cadene["Cadene"]["img_s"] if "Cadene" in cadene else None
        r["vs_cadene_cl"] = (
            r["img_s"] / cadene["Cadene + channels_last"]["img_s"] if "Cadene + channels_last" in cadene else None
        )
    _print_rows(rows, f"training step, {model}, batch {batch} (matmul {peak:.0f} GFLOP/s)")
    return rows


def search_section(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Children per minute of the cell search (``benchmarks/search.py``'s default setup)."""
    from .search import measure

    return measure(quick=args.quick, device=device, threads=args.threads)


def targets(eval_rows: list[dict[str, Any]], train_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets, as ratios measured in this run."""
    out = []

    def row(rows: list[dict], **match: Any) -> dict | None:
        return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)

    def add(target: str, value: float | None, fmt: str, met: bool | None) -> None:
        out.append(dict(target=target, measured=None if value is None else fmt.format(value), met=met))

    for model in MODELS:
        for config, how in (("ours", "eager"), ("ours + torch.compile", "compiled optimize_for_inference")):
            ours = row(eval_rows, model=model, batch=8, config=config)
            if ours and ours.get("vs_fastest_peer"):
                v = ours["vs_fastest_peer"]
                add(f"eval {model} bs8 >= 1.5x the fastest peer configuration ({how})", v, "{:.2f}x", v >= 1.5)
        peers = [r for r in eval_rows if r["model"] == model and r["batch"] == 8 and r["peer"]]
        if peers:  # same mult-adds for all: no implementation passes the matmul peak, so this bounds the ratio
            v = 100 / max(r["pct_peak"] for r in peers)
            add(f"(for reference) {model} bs8 at the matmul peak, vs the fastest peer (a ceiling)", v, "{:.2f}x", None)
    large = row(eval_rows, model="large", batch=8, config="ours")
    if large:
        v = large["pct_peak"]
        add("eval large bs8 >= 50 % of the matmul peak", v, "{:.0f} %", v >= 50)
    mobile = row(train_rows, model="mobile", config="ours")
    if mobile and mobile.get("vs_cadene"):
        v = mobile["vs_cadene"]
        add("training mobile bs16 >= 1.2x Cadene (as released, NCHW)", v, "{:.2f}x", v >= 1.2)
    if mobile and mobile.get("vs_cadene_cl"):
        v = mobile["vs_cadene_cl"]
        add("training mobile bs16 >= 1.2x Cadene + channels_last", v, "{:.2f}x", v >= 1.2)
    for model in MODELS:
        plain, ckpt = row(train_rows, model=model, config="ours"), row(train_rows, model=model, grad_ckpt=True)
        if not (plain and ckpt):
            continue
        if plain["peak_mib"] and ckpt["peak_mib"]:
            cut = 100 * (1 - ckpt["peak_mib"] / plain["peak_mib"])
            add(f"grad checkpointing cuts {model} peak training memory >= 40 %", cut, "{:.1f} %", cut >= 40)
        if plain.get("saved_mib") and ckpt.get("saved_mib"):
            cut = 100 * (1 - ckpt["saved_mib"] / plain["saved_mib"])
            add(f"(for reference) ... and {model}'s activations kept for backward", cut, "{:.0f} %", None)
        extra = 100 * (ckpt["seconds"] / plain["seconds"] - 1)
        add(f"grad checkpointing costs {model} <= 35 % extra time", extra, "{:+.0f} %", extra <= 35)
    return out


# --- report ---------------------------------------------------------------------------------------------------
def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _print_rows(rows: list[dict[str, Any]], title: str) -> None:
    print(f"\n{title}")
    for r in rows:
        ratio = r.get("vs_fastest_peer") or r.get("vs_cadene")
        print(
            f"  {r['config']:<40} {r['seconds'] * 1e3:9.1f} ms (CPU {r['cpu_seconds'] * 1e3:9.1f} ms)"
            f"  {r['img_s']:8.2f} img/s  {r['gflops']:7.1f} GFLOP/s"
            f"  {_fmt(ratio, '.2f')}x"
            + (f"  (compile {r['compile_s']:.0f} s)" if r.get("compile_s") else "")
            + (f"  peak {r['peak_mib']:.0f} MiB, saved {r['saved_mib']:.0f} MiB" if r.get("peak_mib") else "")
        )
        sys.stdout.flush()


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    mm = results["matmul"]
    peaks = [r["matmul_gflops"] for r in results["eval"] + results["train"]]
    peak = f"{min(peaks):.0f}-{max(peaks):.0f} GFLOP/s" if peaks else "-"
    parts = [
        f"Measured {m['date']} on {m['cpu']} ({m['device']}, {m['threads']} threads, {m['dtype']}, torch "
        f"{m['torch']}{', quick' if m['quick'] else ''}). Each group of rows is timed round-robin with a "
        f'{mm["n"]}x{mm["n"]} {mm["dtype"]} matmul as one more member (the peak for its "% of peak"; {peak} '
        f"across groups): medians of at least {m['repeats']} rounds and {m['min_seconds']:.0f} s after "
        f"{m['warmup']} warm-up rounds. Ratios are against the fastest peer configuration (eval) or Cadene as "
        'released and in channels_last (training), all measured in this run. "ours + torch.compile" is '
        "`torch.compile(nasnet_zoo.fast.optimize_for_inference(model))`; its compile time is the first call's, "
        "with whatever inductor had "
        "cached on disk from earlier runs (a first compile on a fresh machine takes about a minute).",
        "",
        "**Eval throughput**",
        "",
        table(
            ["model", "batch", "configuration", "ms / batch", "img/s", "GFLOP/s", "% of peak", "vs fastest peer"],
            [
                (
                    r["model"],
                    r["batch"],
                    r["config"] + (f" (compile {r['compile_s']:.0f} s)" if r["compile_s"] else ""),
                    f"{r['seconds'] * 1e3:.1f}",
                    f"{r['img_s']:.2f}",
                    f"{r['gflops']:.0f}",
                    f"{r['pct_peak']:.0f}",
                    _fmt(r["vs_fastest_peer"], ".2f") + "x",
                )
                for r in results["eval"]
            ],
        ),
        "",
        "**Training step** (SGD with momentum, cross-entropy. Peak: resident-set high-water mark of a fresh "
        "process above its footprint before the model was built. Saved: activations one forward keeps for "
        "backward, parameters excluded)",
        "",
        table(
            [
                "model",
                "batch",
                "configuration",
                "s / step",
                "img/s",
                "peak MiB",
                "saved MiB",
                "vs Cadene",
                "vs Cadene + cl",
            ],
            [
                (
                    r["model"],
                    r["batch"],
                    r["config"],
                    f"{r['seconds']:.3f}",
                    f"{r['img_s']:.2f}",
                    _fmt(r["peak_mib"], ".0f"),
                    _fmt(r["saved_mib"], ".0f"),
                    _fmt(r["vs_cadene"], ".2f") + "x",
                    _fmt(r["vs_cadene_cl"], ".2f") + "x",
                )
                for r in results["train"]
            ],
        ),
        "",
    ]
    s = results["search"]
    parts += [
        "**Search**: "
        + (
            f"{s['children_per_minute']:.2f} children per minute ({s.get('setup', '')})"
            if s
            else "children per minute: skipped in this run"
        ),
        "",
        "**Speed targets** (what the project aims for, and whether this run met it)",
        "",
        table(
            ["target", "measured", "met"],
            [(t["target"], t["measured"], {True: "yes", False: "no", None: "-"}[t["met"]]) for t in results["targets"]],
        ),
    ]
    return "\n".join(parts) + "\n"


def update_readme(md: str, readme: Path = ROOT / "README.md") -> bool:
    """Splice ``md`` into README.md's generated block ``benchmarks``; False (nothing written) when it has none."""
    from nasnet_zoo.errors import ConfigError
    from nasnet_zoo.files import atomic_write
    from nasnet_zoo.generated import splice

    try:
        text = splice(readme.read_text(), README_BLOCK, md, README_COMMAND)
    except ConfigError:
        return False
    atomic_write(readme, text)
    return True


def machine(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if device.type == "cuda":
        cpu = torch.cuda.get_device_name(device)
    return dict(
        date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), cpu=cpu, device=device.type,
        threads=torch.get_num_threads(), dtype="bf16 autocast" if device.type == "cuda" or measure.CPU_AMP else "fp32",
        torch=torch.__version__, python=platform.python_version(), quick=args.quick, warmup=args.warmup,
        repeats=args.repeats, min_seconds=args.min_seconds,
    )  # fmt: skip


# --- command line ---------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke test: mobile only, 1 warm-up + 2 rounds, no compile")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--models", default=None, help="comma-separated: mobile,large (default both; quick: mobile)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up rounds (default 2; quick 1)")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds, at least (default 7; quick 2)")
    p.add_argument("--min-seconds", type=float, default=None, help="time each group at least this long (20; 2)")
    p.add_argument("--skip", default="", help="comma-separated sections to skip: eval,train,memory,compile,search")
    p.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    g = p.add_argument_group("timm's benchmark.py flags")
    g.add_argument("--amp", action="store_true", help="bf16 autocast on CPU too (CUDA always runs under it)")
    g.add_argument("--channels-last", action="store_true", help="no change: channels_last rows are always measured")
    g.add_argument(
        "--torchcompile", nargs="?", const="inductor", metavar="BACKEND",
        help="measure the torch.compile rows even with --quick (only inductor is measured)",
    )  # fmt: skip
    g.add_argument("--results-file", type=Path, metavar="FILE", help="also write the results JSON to FILE")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    skip = {s for s in args.skip.split(",") if s}
    unknown = skip - {"eval", "train", "memory", "compile", "search"}
    if unknown:
        raise SystemExit(f"--skip: unknown sections {sorted(unknown)}; choose from eval,train,memory,compile,search")
    models = (args.models or ("mobile" if args.quick else "mobile,large")).split(",")
    if bad := [m for m in models if m not in MODELS]:
        raise SystemExit(f"--models: unknown {bad}; choose from {','.join(MODELS)}")
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    args.repeats = args.repeats if args.repeats is not None else (2 if args.quick else 7)
    args.min_seconds = args.min_seconds if args.min_seconds is not None else (2.0 if args.quick else 20.0)
    args.eval_batches = (1, 8)
    if args.torchcompile not in (None, "inductor"):
        raise SystemExit(f"--torchcompile: only inductor is measured, got {args.torchcompile!r}")
    if args.torchcompile and "compile" in skip:
        raise SystemExit("--torchcompile and --skip compile exclude each other")
    args.no_compile = (args.quick and not args.torchcompile) or "compile" in skip
    measure.CPU_AMP = args.amp
    args.no_memory = "memory" in skip
    args.peers = peers_available()
    if not args.peers:
        print("pretrainedmodels is not installed (pip install -e '.[peers]'): Cadene rows are left out")
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(auto if args.device == "auto" else args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    mm = Matmul(device, args.quick)
    results: dict[str, Any] = dict(machine=machine(args, device), matmul=mm.describe(), eval=[], train=[])
    for model in models:
        if "eval" not in skip:
            results["eval"] += eval_section(model, args, device, mm)
    for model in models:
        if "train" not in skip:
            results["train"] += train_section(model, args, device, mm)
    results["search"] = None
    if "search" not in skip:
        results["search"] = search_section(args, device)
    results["targets"] = targets(results["eval"], results["train"])

    md = markdown(results)
    out = args.out or (ROOT / "runs" / "bench-quick" if args.quick else ROOT / "benchmarks" / "results")
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{device.type}.md").write_text(md)
    (out / f"{device.type}.json").write_text(json.dumps(results, indent=1) + "\n")
    if args.results_file is not None:
        args.results_file.parent.mkdir(parents=True, exist_ok=True)
        args.results_file.write_text(json.dumps(results, indent=1) + "\n")
    print("\n" + md)
    print(f"wrote {out / device.type}.md and .json")
    plain = not (args.quick or args.out or skip or args.amp or args.torchcompile)
    if device.type == "cpu" and plain and update_readme(md):
        print("updated the benchmark table in README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
