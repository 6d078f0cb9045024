"""The retrain step: the search's top-k cells trained longer, the final cell chosen on validation, then tested.

The paper trained its top 250 children to convergence to choose its cells. `retrain` trains the ``top_k`` best
distinct cells of every run under ``out`` for ``epochs`` (the preset's retrain setting), scores each on the
validation split the search rewarded, picks the best there, and only then scores that one cell on the task's
held-out test split (``task.test_accuracy``), which nothing before has read: the test number is an estimate of
the chosen cell's accuracy, not one more thing to choose on (scoring every candidate there would invite it).

``out/retrain.jsonl`` gets one line per score (``split`` ``validation`` or ``test``); a cell already scored there
with the same epochs is not trained again, so a larger ``top_k`` later trains only the new cells. The winner goes
to ``out/final.json``. One process at a time holds ``out`` (`nasnet_zoo.files.RunLock`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from nasnet_zoo.errors import ConfigError, RunError
from nasnet_zoo.files import RunLock
from nasnet_zoo.genotype import Genotype

from . import report
from .evaluators import Job, Outcome, run_all
from .loop import PRESETS, make_run_evaluator, task_from_dict
from .runfolder import RUN, Journal, comparable

RETRAIN, FINAL = "retrain.jsonl", "final.json"
SPLITS = {"validation": "reward", "test": "test_accuracy"}  # split -> the task's method that scores it


def retrain(
    out: Path,
    top_k: int | None = None,
    epochs: int | None = None,
    workers: int | None = None,
    backend: str | None = None,
    seed: int = 0,
    progress: bool = False,
    data_dir: str | None = None,
    ray_address: str | None = None,
    gpus_per_child: float = 0.0,
) -> list[dict[str, Any]]:
    """Retrain the top-k cells under ``out`` and choose the final one (see the module docstring).

    Returns one row per candidate, best on validation first: ``hash``, ``run``, ``search_reward``, ``epochs``,
    ``reward`` (validation, None if it failed), ``test`` (the final cell's, None for the others), ``error``,
    ``genotype``. ``data_dir`` points a cifar10 search at its data on this machine; the evaluator is chosen
    as in `loop.run_search`.
    """
    out = Path(out)
    metas = [_meta(p) for p in sorted(out.glob(f"*/{RUN}"))]
    if not metas:
        raise RunError(f"no search runs under {out}; run `nasnet-zoo search --out {out}` first")
    if len({json.dumps(comparable(m)["task"], sort_keys=True) for m in metas}) != 1:
        raise RunError(f"the runs under {out} trained children on different tasks; retrain one task at a time")
    preset = PRESETS[metas[0]["preset"]]
    epochs = epochs or preset.retrain_epochs
    task = task_from_dict(metas[0]["task"]).longer(epochs)
    if data_dir is not None:
        task = dataclasses.replace(task, data_dir=data_dir)
    if not callable(getattr(task, "test_accuracy", None)):
        raise ConfigError(f"the {type(task).__name__} task has no held-out test split (test_accuracy); retrain "
                          "would have nothing to report the final cell on")  # fmt: skip
    with RunLock(out):
        journal = Journal(out / RETRAIN)
        lines, complete, size = journal.read()
        journal.continue_after(complete, size)  # a line torn by a crash is cut off before anything is appended
        done = {(r["hash"], r["epochs"], r["split"]): r for r in lines}
        candidates = report.top_k(report.load_runs(out), top_k or preset.top_k)

        def score(cells: list[dict[str, Any]], split: str) -> None:
            todo = [c for c in cells if (c["hash"], epochs, split) not in done]
            if not todo:
                return
            evaluator = make_run_evaluator(backend or preset.backend, task, workers or preset.workers, ray_address,
                                           gpus_per_child)  # fmt: skip
            bar = None
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=len(todo), desc=f"retrain {epochs} epochs, {split}", unit="child")

            def finished(o: Outcome) -> None:
                c = todo[o.id]
                row = {"hash": c["hash"], "run": c["run"], "search_reward": c["reward"], "epochs": epochs,
                       "split": split, "reward": o.reward, "error": o.error, "seconds": round(o.seconds, 3),
                       "genotype": c["genotype"]}  # fmt: skip
                journal.append(row)
                done[c["hash"], epochs, split] = row
                if bar is not None:
                    bar.update(1)

            jobs = [Job(i, Genotype.from_dict(c["genotype"]), seed, SPLITS[split]) for i, c in enumerate(todo)]
            try:
                run_all(evaluator, jobs, finished)
            finally:
                evaluator.close()
                if bar is not None:
                    bar.close()

        score(candidates, "validation")
        rows = [_row(done[c["hash"], epochs, "validation"]) for c in candidates]
        rows.sort(key=lambda r: float("inf") if r["reward"] is None else -r["reward"])
        if rows and rows[0]["reward"] is not None:  # chosen on validation; only now is the test split read
            score([c for c in candidates if c["hash"] == rows[0]["hash"]], "test")
            rows[0]["test"] = done[rows[0]["hash"], epochs, "test"]["reward"]
            Genotype.from_dict(rows[0]["genotype"]).save(out / FINAL)
    return rows


def _row(line: dict[str, Any]) -> dict[str, Any]:
    return {**{k: v for k, v in line.items() if k not in ("split", "seconds")}, "test": None}


def _meta(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise RunError(f"{path} is not JSON ({e}); restore it, or move that run out of the folder") from None
