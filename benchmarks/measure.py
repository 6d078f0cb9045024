"""How the benchmark measures: round-robin timing, the matmul peak, a training step, and peak training memory.

* Timing: every configuration of a group runs once per round (after the warm-up rounds), so a burst of load
  from other processes hits all of them alike; each configuration's time is the median of its rounds.
* Matmul peak: the best of repeated square matmuls (fp32 on CPU, bf16 on CUDA), the yardstick for GFLOP/s.
* Peak training memory: on CPU there is no allocator to ask, so each configuration trains for a few steps in a
  fresh process (``python -m benchmarks.measure SPEC``) and reports its resident-set high-water mark (VmHWM,
  what the kernel saw the process touch) above the process's footprint before the model was built; nothing
  another configuration allocated can leak into the number (what glibc keeps after a free does count: that
  is memory the process holds). On CUDA the same child reports ``torch.cuda.max_memory_allocated`` above what
  was allocated before the model was built. Beside the peak, the child counts the activations one forward
  keeps for backward (distinct storages seen by a saved-tensors hook, parameters excluded): the part of the
  peak that gradient checkpointing acts on, free of allocator effects.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .models import Config


def load_note(before: float, after: float) -> str:
    """The one-minute load averages around a measurement, for its report; a load of 0.5 or more before it began
    means other work was running (during it, the measurement's own processes add to the load)."""
    shared = " (other work was running when it began)" if before >= 0.5 else ""
    return f"load average {before:.1f} before and {after:.1f} after{shared}"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def round_robin(
    fns: dict[str, Callable[[], object]], warmup: int, repeats: int, device: torch.device, min_seconds: float = 0.0
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall-clock and process CPU seconds per call of each function: ``warmup`` rounds, then timed rounds,
    at least ``repeats`` of them and more (up to 20x) until ``min_seconds`` have passed, so quick calls get many
    samples and a burst of load from elsewhere cannot fill a whole column.

    Wall time is the result; CPU time (all threads, spin-waits included) is kept beside it because it moves
    less when other processes take the cores away."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    start = time.perf_counter()
    rounds = 0
    while rounds < repeats or (time.perf_counter() - start < min_seconds and rounds < 20 * repeats):
        for k, fn in fns.items():
            sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            sync(device)
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
        rounds += 1
    return wall, cpu


def median(xs: list[float]) -> float:
    return statistics.median(xs)


class Matmul:
    """The yardstick: an n x n matmul in the benchmark's dtype (fp32 on CPU, bf16 on CUDA), 2 n^3 FLOPs.

    It runs as one more member of every timed group, so it sees the same load as the models it is compared
    with; `gflops` turns its time into GFLOP/s."""

    def __init__(self, device: torch.device, quick: bool) -> None:
        self.n = (1024 if quick else 2048) if device.type == "cpu" else 8192
        self.dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
        self.a, self.b = (torch.randn(self.n, self.n, device=device, dtype=self.dtype) for _ in range(2))

    def __call__(self) -> torch.Tensor:
        return self.a @ self.b

    def gflops(self, seconds: float) -> float:
        return 2 * self.n**3 / seconds / 1e9

    def describe(self) -> dict[str, object]:
        return dict(n=self.n, dtype=str(self.dtype).removeprefix("torch."))


#: bf16 autocast on CPU as well (``python -m benchmarks.run --amp``).
CPU_AMP = False


@contextlib.contextmanager
def autocast(device: torch.device) -> Iterator[None]:
    """bf16 autocast on CUDA; fp32 (no autocast) on CPU unless `CPU_AMP`."""
    if device.type == "cuda" or CPU_AMP:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            yield
    else:
        yield


def logits_of(out: torch.Tensor | tuple) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


def train_step_fn(model: nn.Module, x: torch.Tensor, device: torch.device) -> Callable[[], None]:
    """One SGD step (cross-entropy on random labels, momentum 0.9), in training mode."""
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    y = torch.randint(0, 1000, (x.shape[0],), device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)  # before the forward: last step's gradients are gone by its peak
        with autocast(device):
            loss = F.cross_entropy(logits_of(model(x)), y)
        loss.backward()
        opt.step()

    return step


# --- peak training memory, one fresh process per configuration -----------------------------------------------
def _rss_kib(field: str) -> int:
    """VmRSS / VmHWM of this process in KiB (Linux); elsewhere ru_maxrss for both (peak only)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


def _train_memory_child(spec: dict) -> dict[str, float]:
    global CPU_AMP
    CPU_AMP = spec.get("amp", False)
    import timm  # noqa: F401  (imported before the baseline is taken, like the peers' package below)

    with contextlib.suppress(ImportError):
        import pretrainedmodels  # noqa: F401
    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    config = Config(**spec["config"])
    cuda = device.type == "cuda"
    before = torch.cuda.memory_allocated(device) if cuda else _rss_kib("VmRSS") * 1024
    model = config.build(device)
    x = config.input(spec["batch"], device)
    step = train_step_fn(model, x, device)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(spec["steps"]):
        step()
    sync(device)
    peak = torch.cuda.max_memory_allocated(device) if cuda else _rss_kib("VmHWM") * 1024
    return dict(peak_mib=(peak - before) / 2**20, saved_mib=saved_for_backward(model, x, device) / 2**20)


def saved_for_backward(model: nn.Module, x: torch.Tensor, device: torch.device) -> int:
    """Bytes of the distinct storages one training forward keeps for the backward pass, parameters excluded:
    the activation memory, independent of the allocator (what gradient checkpointing trades for time)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: set[int] = set()

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params and storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            pack.total += storage.nbytes()
        return t

    pack.total = 0
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast(device):
        model(x)
    return pack.total


def peak_train_memory(config: Config, batch: int, device: torch.device, threads: int, steps: int) -> dict[str, float]:
    """MiB that training ``config`` at ``batch`` adds to a fresh process at its peak (``peak_mib``: weights,
    gradients, optimizer state, activations, workspace) and the activations kept for backward (``saved_mib``)."""
    spec = dict(config=asdict(config), batch=batch, device=str(device), threads=threads, steps=steps, amp=CPU_AMP)
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.measure", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,  # the checkout, where ``benchmarks`` imports from
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"memory child for {config.label} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    print(json.dumps(_train_memory_child(json.loads(sys.argv[1]))))
