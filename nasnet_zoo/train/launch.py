"""Starting data-parallel replicas on this machine: torchrun for N local processes (``nasnet-zoo train --nproc
N``), a failure of any of them turned into one `RunError`. Several machines: run torchrun on each yourself (see
the README's "Distributed training")."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError, RunError


def torchrun_command(target: Sequence[str], nproc: int) -> list[str]:
    """torchrun on this machine for ``nproc`` replicas of ``target`` (``["-m", "module", args...]`` or
    ``["script.py", args...]``): a local rendezvous on a free port, no restarts."""
    if nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {nproc}")
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    return [*run, "--max-restarts=0", *target]


def launch(target: Sequence[str], nproc: int, *, cwd: str | Path | None = None) -> None:
    """Run ``target`` on ``nproc`` local replicas through torchrun and wait. A replica that raises or dies ends
    the others (torchrun names it, with its exit code or signal) and this raises `RunError`."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    result = subprocess.run(torchrun_command(target, nproc), env=env, cwd=cwd, check=False)
    if result.returncode != 0:
        raise RunError(
            f"the run on {nproc} replicas failed (torchrun exit status {result.returncode}; its report above names "
            "the replica and the cause); the last checkpoint is intact: fix the cause and rerun with --resume"
        )
