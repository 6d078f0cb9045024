"""``python -m benchmarks.fidelity``: the proxy-fidelity measurement of a preset, written where results are
committed.

    python -m benchmarks.fidelity --preset laptop --cells 30 --seeds 2 --seed 1

runs `nasnet_zoo.search.fidelity` (K uniformly random cells of cell seed S plus NASNet-A, the proxy under several
seeds, each cell stand-alone on the held-out test split) in ``--out`` (default ``runs/fidelity-<preset>-seed<S>``;
a rerun resumes it) and writes ``benchmarks/results/fidelity-<preset>-seed<S>.{json,md,png}`` stamped with the
command, date, CPU model and load. It is ``nasnet-zoo fidelity`` itself (the same options and the same function,
`nasnet_zoo.cli.searching.fidelity`), plus where the results go.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nasnet_zoo.cli.options import UsageError
from nasnet_zoo.cli.searching import _fidelity_arguments, fidelity
from nasnet_zoo.errors import NasnetZooError

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.fidelity", description=__doc__.split("\n\n")[0])
    _fidelity_arguments(p, out_required=False)
    p.add_argument("--results", type=Path, default=RESULTS, help="folder for fidelity-<preset>-seed<S>.*")
    args = p.parse_args(argv)
    args.out = args.out or Path("runs") / f"fidelity-{args.preset}-seed{args.seed}"
    args.command = "python -m benchmarks.fidelity " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        fidelity(args)
    except NasnetZooError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2 if isinstance(e, UsageError) else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
