"""The search loop (search/loop.py): journal, crash and resume, duplicates, failing children, budgets, outputs,
retrain (search/retrain.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from nasnet_zoo.search import loop, runfolder
from nasnet_zoo.search.evaluators import SerialEvaluator
from nasnet_zoo.search.loop import PRESETS, SearchConfig, run_search
from nasnet_zoo.search.report import read_journal
from nasnet_zoo.search.retrain import retrain
from nasnet_zoo.search.space import Proposal, canonical_hash, decode, encode, random_genotype
from nasnet_zoo.search.tasks import Cifar10Task, SyntheticTask

import nasnet_zoo
from nasnet_zoo.errors import ConfigError, RunError
from nasnet_zoo.genotype import Block, Cell, Genotype
from tests.search_testing import Misleading, test_reads

FIELDS = {"child", "hash", "reward", "error", "resampled", "seconds", "worker", "policy_version", "log_prob", "elapsed",
          "actions", "genotype"}  # fmt: skip
SAME = ["child", "hash", "reward", "error", "resampled", "policy_version", "log_prob", "actions"]  # not timings


def _journal(out: Path, run: str = "ppo-seed0") -> list[dict[str, Any]]:
    return read_journal(out / run / "journal.jsonl")


def _semantic(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: r[k] for k in SAME} for r in records]


def test_the_nasnet_preset_is_the_papers_protocol() -> None:
    p = PRESETS["nasnet"]
    assert p.budget == 20_000 and p.top_k == 250
    assert isinstance(p.task, Cifar10Task)
    t = p.task
    assert t.num_cells == 6  # N = 2 normal cells per stack
    assert (t.epochs, t.momentum, t.train_size, t.val_size) == (20, 0.9, 45_000, 5_000)
    pol = p.policy
    assert (pol.method, pol.lr, pol.entropy_weight, pol.baseline_decay, pol.batch_size) == (
        "ppo", 0.00035, 0.00001, 0.95, 20)  # fmt: skip
    assert (pol.hidden, pol.init_range) == (100, 0.1)
    with pytest.raises(ValueError, match="needs --data-dir"):
        SearchConfig(preset="nasnet").resolved()


def test_journal_lines(tmp_path: Path) -> None:
    result = run_search(SearchConfig(preset="synthetic", budget=45, out=tmp_path))
    lines = (tmp_path / "ppo-seed0" / "journal.jsonl").read_text().splitlines()
    assert len(lines) == 45
    for i, line in enumerate(lines):
        r = json.loads(line)
        assert set(r) == FIELDS
        assert r["child"] == i and r["error"] is None and r["resampled"] == 0
        g = Genotype.from_dict(r["genotype"])
        assert decode(r["actions"]) == g and canonical_hash(g) == r["hash"]
        assert r["reward"] == pytest.approx(SyntheticTask().reward(g, i))  # the child's seed is its id
        assert r["policy_version"] == (0 if i < 20 else 1 if i < 40 else 2)  # one update per 20 children
    state = torch.load(tmp_path / "ppo-seed0" / "state.pt", weights_only=True)
    assert state["algorithm"]["version"] == 2 and state["pending"] == [] and state["journal_lines"] == 45
    assert result.best["reward"] == max(json.loads(x)["reward"] for x in lines)


class Crash(BaseException):
    """Stands in for kill -9 at one precise moment (BaseException: no handler in the loop catches it)."""


def _crash_on_call(
    monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, n: int, before: Any = None, error: type = Crash
) -> None:
    original, calls = getattr(owner, name), []

    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == n:
            if before is not None:
                before(self, *args)
            raise error(f"{name} #{n}")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)


def _write_then_crash(journal: Any, record: dict[str, Any]) -> None:  # the line is on disk, nothing else happened
    with journal.path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def _torn_write(journal: Any, record: dict[str, Any]) -> None:  # killed in the middle of the line
    with journal.path.open("a") as f:
        f.write(json.dumps(record)[:40])


@pytest.mark.parametrize(
    "where",
    ["after a journal line, before the update", "mid-line", "after the checkpoint, before submitting",
     "while children train", "Ctrl-C while children train"],
)  # fmt: skip
@pytest.mark.parametrize("algo", ["ppo", "evolution"])
def test_crash_at_any_moment_then_resume_equals_an_uninterrupted_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, algo: str
) -> None:
    config = dict(preset="synthetic", algo=algo, budget=50, workers=2)
    reference = run_search(SearchConfig(**config)).records  # in memory, never interrupted
    with monkeypatch.context() as m:
        if where.startswith("after a journal line"):
            _crash_on_call(m, runfolder.Journal, "append", 20, before=_write_then_crash)  # the 20th triggers PPO
        elif where == "mid-line":
            _crash_on_call(m, runfolder.Journal, "append", 31, before=_torn_write)
        elif where.startswith("after the checkpoint"):
            _crash_on_call(m, SerialEvaluator, "submit", 25)
        elif where.startswith("Ctrl-C"):
            _crash_on_call(m, SerialEvaluator, "wait_any", 23, error=KeyboardInterrupt)
        else:
            _crash_on_call(m, SerialEvaluator, "wait_any", 17)
        with pytest.raises(KeyboardInterrupt if where.startswith("Ctrl-C") else Crash):
            run_search(SearchConfig(**config, out=tmp_path))
    run = f"{algo}-seed0"
    crashed = _journal(tmp_path, run)
    assert _semantic(crashed) == _semantic(reference[: len(crashed)])
    run_search(SearchConfig(**config, out=tmp_path, resume=True))
    assert _semantic(_journal(tmp_path, run)) == _semantic(reference)
    assert (tmp_path / run / "journal.jsonl").read_text().endswith("}\n")


def test_resume_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="nothing to resume"):
        run_search(SearchConfig(preset="synthetic", budget=5, out=tmp_path, resume=True))
    assert not (tmp_path / "ppo-seed0").exists()
    run_search(SearchConfig(preset="synthetic", budget=5, out=tmp_path))
    with pytest.raises(RunError, match="already holds a search; pass --resume"):
        run_search(SearchConfig(preset="synthetic", budget=5, out=tmp_path))
    with pytest.raises(RunError, match="holds another search"):
        run_search(SearchConfig(preset="synthetic", budget=9, out=tmp_path, resume=True, task=SyntheticTask(seed=1)))
    more = run_search(SearchConfig(preset="synthetic", budget=9, out=tmp_path, resume=True))
    assert [r["child"] for r in more.records] == list(range(9))
    with pytest.raises(ValueError, match="unknown algorithm"):
        SearchConfig(algo="bayesian")
    with pytest.raises(ValueError, match="budget must be at least 1"):
        SearchConfig(budget=0)
    with pytest.raises(ConfigError, match="max_minutes must be more than 0"):
        SearchConfig(max_minutes=-1)
    with pytest.raises(ConfigError, match="gpus_per_child must be at least 0"):  # not Ray's ValueError
        SearchConfig(gpus_per_child=-1)


def test_wall_time_budget_stops_and_resume_finishes(tmp_path: Path) -> None:
    config = dict(preset="synthetic", algo="random", budget=40, task=SyntheticTask(seconds=0.05), out=tmp_path)
    first = run_search(SearchConfig(**config, max_minutes=0.3 / 60))
    assert 1 <= len(first.records) < 40
    assert first.wall_seconds < 2.0
    second = run_search(SearchConfig(**config, max_minutes=1.0, resume=True))
    assert [r["child"] for r in second.records] == list(range(40))


_EVALUATIONS: list[int] = []


@dataclass(frozen=True)
class Counting:
    """Synthetic, counting real evaluations."""

    def reward(self, genotype: Genotype, seed: int) -> float:
        _EVALUATIONS.append(seed)
        return SyntheticTask(noise=0.0).reward(genotype, seed)


class Scripted:
    """An algorithm that proposes the given genotypes in turn, over and over, and records what it observes."""

    version = 0

    def __init__(self, genotypes: list[Genotype]) -> None:
        self.actions = [tuple(encode(g)) for g in genotypes]
        self.drawn = 0
        self.observed: list[tuple[tuple[int, ...], float | None]] = []

    def propose(self) -> Proposal:
        self.drawn += 1
        return Proposal(self.actions[(self.drawn - 1) % len(self.actions)])

    def observe(self, proposal: Proposal, reward: float | None) -> None:
        self.observed.append((proposal.actions, reward))

    def reseed(self, seed: int) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {"drawn": self.drawn}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.drawn = state["drawn"]


def _swap_add(g: Genotype) -> Genotype:
    """The same network: every block's two branches swapped."""
    blocks = tuple(Block(b.inputs[::-1], b.ops[::-1], b.combine) for b in g.normal.blocks)
    return Genotype(Cell(blocks, g.normal.concat), g.reduction)


def test_a_cell_trained_already_is_drawn_again_never_trained_or_observed_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b, c = (decode(encode(random_genotype(s))) for s in range(3))
    script = Scripted([a, a, b, _swap_add(a), a, c])
    monkeypatch.setattr(loop, "make_algorithm", lambda *args: script)
    _EVALUATIONS.clear()
    result = run_search(SearchConfig(preset="synthetic", budget=3), SerialEvaluator(Counting()))
    assert [r["hash"] for r in result.records] == [canonical_hash(g) for g in (a, b, c)]  # the budget: 3 trained
    assert [r["resampled"] for r in result.records] == [0, 1, 2]
    assert len(_EVALUATIONS) == 3 and script.drawn == 6
    assert script.observed == [(tuple(r["actions"]), r["reward"]) for r in result.records]  # each once

    script = Scripted([a, _swap_add(a)])  # an algorithm that can only propose one network: it has converged
    monkeypatch.setattr(loop, "make_algorithm", lambda *args: script)
    result = run_search(SearchConfig(preset="synthetic", budget=3), SerialEvaluator(Counting()))
    assert len(result.records) == 1 and script.drawn == 1 + loop.MAX_DRAWS
    [note] = result.notes
    assert "drew 1000 cells in a row that it had trained already: it has converged; stopped at 1 children" in note


def test_evolution_never_trains_a_cell_twice() -> None:
    _EVALUATIONS.clear()
    result = run_search(SearchConfig(preset="synthetic", algo="evolution", budget=300), SerialEvaluator(Counting()))
    records = result.records
    assert [r["child"] for r in records] == list(range(300)) and len(_EVALUATIONS) == 300
    assert len({r["hash"] for r in records}) == 300
    assert sum(r["resampled"] for r in records) > 0, "mutations revisit cells; those must have been drawn again"


@dataclass(frozen=True)
class Flaky:
    """Synthetic, except the children listed: they raise, return NaN, run out of memory or kill their worker."""

    failures: tuple[tuple[int, str], ...] = ()
    seconds: float = 0.0  # simulated training time of the others

    def reward(self, genotype: Genotype, seed: int) -> float:
        how = dict(self.failures).get(seed)
        if how == "raise":
            raise RuntimeError("a bug in the child")
        if how == "nan":
            return float("nan")
        if how == "oom":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        if how == "kill":  # what the kernel's OOM killer does
            os.kill(os.getpid(), signal.SIGKILL)
        return SyntheticTask(seconds=self.seconds).reward(genotype, seed)


def test_failing_children_are_journaled_and_the_search_goes_on(tmp_path: Path) -> None:
    failures = ((2, "raise"), (4, "nan"), (6, "oom"), (8, "kill"))
    config = SearchConfig(preset="synthetic", algo="evolution", budget=14, workers=2, backend="process",
                          out=tmp_path, task=Flaky(failures, seconds=0.3))  # fmt: skip
    records = run_search(config).records
    assert sorted(r["child"] for r in records) == list(range(14))
    errors = {r["child"]: r["error"] for r in records if r["error"] is not None}
    assert set(errors) == {2, 4, 6, 8}
    assert errors[2].startswith("RuntimeError: a bug in the child")
    assert "nan" in errors[4] and "diverged" in errors[4]
    assert errors[6].startswith("OutOfMemoryError: CUDA out of memory")
    assert errors[8] == "the worker process died (killed by signal 9); out of memory?"
    assert all(records[i]["reward"] is None for i, r in enumerate(records) if r["child"] in errors)
    state = torch.load(tmp_path / "evolution-seed0" / "state.pt", weights_only=True)
    members = [a for a, _ in state["algorithm"]["population"]]  # a failed child has no fitness: not a member
    assert members == [r["actions"] for r in records if r["reward"] is not None]
    workers = {r["worker"] for r in records}
    assert len(workers) == 3  # two workers, one of them replaced after it was killed


def test_a_failed_child_does_not_move_the_baseline(tmp_path: Path) -> None:
    failures = ((1, "raise"), (2, "nan"), (5, "oom"), (13, "raise"), (24, "nan"))
    records = run_search(SearchConfig(preset="synthetic", budget=30, out=tmp_path, task=Flaky(failures))).records
    assert [r["child"] for r in records if r["error"] is not None] == [1, 2, 5, 13, 24]
    baseline, worst, advantage = None, None, {}  # what PPO must have computed, from the trained children only
    for r in records:
        if r["reward"] is None:
            advantage[r["child"]] = worst - baseline
            continue
        baseline = r["reward"] if baseline is None else 0.95 * baseline + 0.05 * r["reward"]
        worst = r["reward"] if worst is None else min(worst, r["reward"])
    ppo = torch.load(tmp_path / "ppo-seed0" / "state.pt", weights_only=True)["algorithm"]
    assert ppo["baseline"] == pytest.approx(baseline) and ppo["version"] == 1
    # the batch after the first update holds children 20..29; failed child 24 is penalised as the worst so far
    assert [a for a, _, _ in ppo["buffer"]] == [r["actions"] for r in records[20:]]
    assert ppo["buffer"][4][2] == pytest.approx(advantage[24]) and advantage[24] < 0


def test_retrain_chooses_on_validation_then_tests_only_the_final_cell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(loop.TASKS, "Misleading", Misleading)
    test_reads.clear()
    run_search(SearchConfig(preset="synthetic", algo="random", budget=30, out=tmp_path, task=Misleading()))
    assert test_reads == []  # the search never reads the test split
    rows = retrain(tmp_path, top_k=5)
    validation = [r["reward"] for r in rows]
    assert validation == sorted(validation, reverse=True) and len(set(validation)) == 5
    assert test_reads == [rows[0]["hash"]]  # read once, for the cell chosen on validation (the worst on test)
    assert rows[0]["test"] == pytest.approx(1.0 - validation[0]) and all(r["test"] is None for r in rows[1:])
    assert Genotype.load(tmp_path / "final.json") == Genotype.from_dict(rows[0]["genotype"])
    lines = read_journal(tmp_path / "retrain.jsonl")
    assert [line["split"] for line in lines] == ["validation"] * 5 + ["test"]
    assert retrain(tmp_path, top_k=5) == rows and len(test_reads) == 1  # read back, nothing trained or tested again
    with (tmp_path / "retrain.jsonl").open("a") as f:
        f.write('{"hash": "torn by a cra')  # a retrain killed mid-line
    assert len(retrain(tmp_path, top_k=6)) == 6
    assert [line["split"] for line in read_journal(tmp_path / "retrain.jsonl")][6:] == ["validation"]
    assert (tmp_path / "retrain.jsonl").read_text().endswith("}\n")


# No `if __name__ == "__main__"` guard, on purpose: workers must never re-run the main script (multiprocessing's
# spawn would, and each worker would start a search of its own).
_KILL_SCRIPT = """
import sys
from pathlib import Path
from nasnet_zoo.search.loop import SearchConfig, run_search
from nasnet_zoo.search.tasks import SyntheticTask
run_search(SearchConfig(preset="synthetic", algo="ppo", budget=40, workers=2, backend="process",
                        out=Path(sys.argv[1]), resume=sys.argv[2] == "resume", task=SyntheticTask(seconds=0.25)))
"""


def _children_of(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to watch the worker processes")
def test_kill_9_then_resume_on_the_process_backend(tmp_path: Path) -> None:
    journal = tmp_path / "ppo-seed0" / "journal.jsonl"
    env = {**os.environ, "PYTHONPATH": str(Path(nasnet_zoo.__file__).parent.parent)}
    script = tmp_path / "search.py"  # a file: multiprocessing's spawn would re-run it in every worker
    script.write_text(_KILL_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path), "new"], env=env)
    try:
        deadline = time.monotonic() + 120
        while not (journal.exists() and journal.read_bytes().count(b"\n") >= 22):
            assert proc.poll() is None, "the search ended before it could be killed"
            assert time.monotonic() < deadline, "the search made no progress"
            time.sleep(0.05)
        workers = _children_of(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    # the workers notice that their parent is gone and stop (no orphan keeps training)
    deadline = time.monotonic() + 15
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert workers and not any(_alive(p) for p in workers)

    raw = journal.read_bytes()
    before = raw[: raw.rfind(b"\n") + 1].decode().splitlines()  # a line torn by the kill is not a finished child
    state = torch.load(tmp_path / "ppo-seed0" / "state.pt", weights_only=True)
    finished = [json.loads(line)["child"] for line in before]
    in_flight = {c: actions for c, actions, *_ in state["pending"] if c not in finished}
    assert 22 <= len(finished) < 40 and in_flight
    unseen = {json.loads(line)["child"] for line in before[state["journal_lines"] :]}  # replayed on resume
    assert unseen <= {c for c, *_ in state["pending"]}

    subprocess.run([sys.executable, str(script), str(tmp_path), "resume"], env=env, check=True, timeout=300)
    after = journal.read_text().splitlines()
    assert after[: len(before)] == before  # no finished child lost or rewritten
    ids = [json.loads(line)["child"] for line in after]
    assert sorted(ids) == list(range(40))  # every child exactly once: none lost, none trained twice
    assert all(json.loads(line)["error"] is None for line in after)
    resumed = {r["child"]: r for r in map(json.loads, after[len(before) :])}
    for child, actions in in_flight.items():  # the children in flight at the kill were re-queued as they were
        assert resumed[child]["actions"] == actions
    final = torch.load(tmp_path / "ppo-seed0" / "state.pt", weights_only=True)
    assert final["algorithm"]["version"] == 2 and final["pending"] == []


def test_outputs_best_json_builds_with_the_zoo(tmp_path: Path) -> None:
    run_search(SearchConfig(preset="synthetic", algo="random", budget=60, out=tmp_path))
    run_search(SearchConfig(preset="synthetic", algo="evolution", budget=60, out=tmp_path))
    best = Genotype.load(tmp_path / "best.json")
    everything = _journal(tmp_path, "random-seed0") + _journal(tmp_path, "evolution-seed0")
    top = max(everything, key=lambda r: r["reward"])
    assert best == Genotype.from_dict(top["genotype"])
    model = nasnet_zoo.create_model("nasnet_cifar", genotype=tmp_path / "best.json", num_cells=3, filters=8,
                                    num_classes=10, in_chans=1, img_size=8)  # fmt: skip
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    topk = json.loads((tmp_path / "topk.json").read_text())
    assert len(topk) == PRESETS["synthetic"].top_k and topk[0]["hash"] == top["hash"]
    rewards = [t["reward"] for t in topk]
    assert rewards == sorted(rewards, reverse=True) and len({t["hash"] for t in topk}) == len(topk)
    assert (tmp_path / "search.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (tmp_path / "summary.md").read_text()
    assert "| random-seed0 " in summary and "| evolution-seed0 " in summary

    rows = retrain(tmp_path, top_k=4)
    assert len(rows) == 4 and all(r["epochs"] == PRESETS["synthetic"].retrain_epochs for r in rows)
    truth = [SyntheticTask().expected_reward(Genotype.from_dict(r["genotype"])) for r in rows]
    assert [r["reward"] for r in rows] == pytest.approx(sorted(truth, reverse=True))  # longer = noise-free
    assert rows[0]["test"] == pytest.approx(max(truth)) and all(r["test"] is None for r in rows[1:])
    assert Genotype.load(tmp_path / "final.json") == Genotype.from_dict(rows[0]["genotype"])
    assert retrain(tmp_path, top_k=4) == rows  # already retrained: read back, not trained again
