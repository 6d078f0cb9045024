"""Weight-sharing search (ENAS): the search's algorithms rewarded by sub-networks of one trained `Supernet`.

A run alternates rounds of

(a) ``shared_steps`` SGD (or Adam) steps on the supernet's weights, each on one training minibatch and one genotype the
    algorithm proposes (the controller's current policy for PPO and REINFORCE; uniform for ``random``, which is
    random search with weight sharing, Li & Talwalkar's RS-WS);
(b) ``children`` rewarded children: distinct cells the algorithm proposes (a cell rewarded already is drawn
    again, as in the stand-alone search), each rewarded with its sub-network's accuracy on ``reward_batches``
    validation minibatches, journaled, then observed by the algorithm (PPO updates every 20, as stand-alone).

The algorithms, controller and PPO are the stand-alone search's (`presets.make_algorithm`). After ``budget``
rewarded children the derive step (ENAS's): ``final`` distinct cells drawn from the final policy (rewarded in the
search or not), each scored on the whole validation split with the final shared weights. A reward has no side
effect on the supernet (BN statistics are put back), so rewards can be replayed.

BN statistics for a reward (``bn``): ``batch`` normalises with the validation minibatch's own statistics (ENAS);
``recalibrate`` re-estimates the child's running statistics on ``recalibrate_batches`` training minibatches
first; ``running`` uses the running averages shared by every child.

Files, for ``OUT/<algo>-ws-seed<S>/`` (one process holds it, `nasnet_zoo.files.RunLock`):

* ``search/``: the search's run folder (`runfolder.RunFolder`): run.json, journal.jsonl (one line per rewarded
  child, the stand-alone search's format plus ``phase`` and ``step``), state.pt (supernet, optimizer, algorithm, at the
  start of a round), and search.png.
* ``run.json`` and ``journal.jsonl``: the derive step's cells. So `report.write_outputs` (best.json, topk.json,
  search.png, summary.md in OUT) and ``retrain`` rank cells on the final weights and the whole validation split,
  never on an early reward of half-trained weights, and take them unchanged (run.json names the stand-alone task).

Resume (kill -9 at any moment included): the round in progress restarts from its checkpoint and runs again
exactly (seeded per step and per child); its children already journaled are not rewarded again, their lines are
checked and replayed into the algorithm. Nothing journaled is lost or counted twice. A run stopped by its
``max_minutes`` checkpoints where it stopped (between two steps or children), with the time spent, and resumes
from there.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from nasnet_zoo.errors import ConfigError, RunError
from nasnet_zoo.files import RunLock, atomic_write
from nasnet_zoo.genotype import Genotype
from nasnet_zoo.runtime import derive_seed, torch_threads
from nasnet_zoo.train import TrainConfig, learning_rate

from . import report
from .loop import MAX_DRAWS, SearchResult
from .presets import PRESETS, SearchConfig, make_algorithm, task_dict
from .runfolder import RunFolder
from .shared_training import SharingConfig, Stream, make_optimizer, score, shared_step, task_data
from .space import NUM_BLOCKS, Proposal, canonical_hash, decode, random_genotype
from .supernet_state import build_supernet, load_supernet, pack, unpack

# build_supernet and load_supernet are `supernet_state`'s, importable from here as before
__all__ = ["SHARING", "build_supernet", "load_supernet", "run_name", "run_sharing"]

#: Presets of `presets.PRESETS` that search by weight sharing (the `search` command dispatches on this table).
SHARING: dict[str, SharingConfig] = {
    "digits-ws": SharingConfig(shared_steps=50, children=20, reward_batches=1, reward_batch_size=150, final=20),
    # 12.7 min on one core (benchmarks/results/sharing.md): 1,000 uniform steps, then 50 rounds of 90 steps and
    # 20 children; Adam at lr 1e-3 (with SGD at the search's lr 0.1 the weights stayed at chance: README,
    # "Weight-sharing search"), F = 8, BN statistics per reward minibatch.
    "laptop-ws": SharingConfig(
        shared_steps=90, children=20, reward_batch_size=128, final=20, uniform_steps=1000, optimizer="adam", lr=1e-3
    ),
    "cifar10-ws": SharingConfig(shared_steps=45_000 // 160, children=300, reward_batch_size=160, final=100, threads=4),
}


# --- the run ---------------------------------------------------------------------------------------------------
def run_name(config: SearchConfig) -> str:
    return f"{config.algo}-ws-seed{config.seed}"


class _Run:
    """One weight-sharing run: its folders, weights, algorithm and counters, and the rules that keep them on disk."""

    def __init__(self, config: SearchConfig, num_blocks: int, device: torch.device) -> None:
        preset, task, budget, _, _ = config.resolved()
        if config.preset not in SHARING:
            raise ConfigError(
                f"preset {config.preset!r} does not search by weight sharing; use one of {sorted(SHARING)}"
            )
        self.config, self.sharing, self.task, self.budget = config, SHARING[config.preset], task, budget
        self.num_blocks, self.device = num_blocks, device
        self.algorithm = make_algorithm(config.algo, config.seed, preset, num_blocks)
        torch.manual_seed(derive_seed(config.seed, 1 << 30))  # the supernet's initial weights
        self.supernet = build_supernet(task, num_blocks, self.sharing.filters).to(device)
        self.lr = self.sharing.lr or task.lr
        self.optimizer = make_optimizer(self.sharing, self.supernet, self.lr, task.momentum)
        train, val = task_data(task)
        self.train = Stream(train, task.batch_size, config.seed, device)
        self.val = Stream(val, self.sharing.reward_batch_size, config.seed, device)
        self.rounds = math.ceil(budget / self.sharing.children)
        self.total_steps = self.sharing.uniform_steps + self.rounds * self.sharing.shared_steps
        self.step = self.round = self.next_child = 0
        self.phase, self.candidates = "search", []
        self.records: list[dict[str, Any]] = []  # the search journal
        self.finals: list[dict[str, Any]] = []  # the derive step's journal
        self.seen: set[str] = set()
        self.elapsed, self.seconds = 0.0, {"shared": 0.0, "reward": 0.0, "controller": 0.0, "disk": 0.0}
        self.notes: list[str] = []
        self.out = None if config.out is None else Path(config.out) / run_name(config)
        self.search = None if self.out is None else RunFolder(self.out / "search")
        self.final = None if self.out is None else RunFolder(self.out)

    # -- disk --
    def meta(self) -> dict[str, Any]:
        return {"preset": self.config.preset, "algo": self.config.algo, "seed": self.config.seed,
                "num_blocks": self.num_blocks, "task": task_dict(self.task)}  # fmt: skip

    def open(self) -> None:
        if self.out is None:
            return
        search_meta = {**self.meta(), "sharing": dataclasses.asdict(self.sharing), "budget": self.budget}
        if not self.config.resume:
            self.final.create(self.meta())
            self.search.create(search_meta)
            self.checkpoint()
            return
        self.final.check(self.meta())
        self.search.check(search_meta)
        state = self.search.load_state()
        if state is None:
            raise RunError(f"{self.search.path} has no state.pt: the shared weights live there and cannot be rebuilt "
                           "from the journal; start the search again in another folder")  # fmt: skip
        self.records, counted = self.search.resume(state)
        self.finals, complete, size = self.final.journal.read()
        self.final.journal.continue_after(complete, size)
        self.supernet.load_state_dict(unpack(state["supernet"]))
        slots: dict[int, dict[str, torch.Tensor]] = {}
        for key, t in unpack(state["optimizer"]["slots"]).items():
            i, name = key.split(".", 1)
            slots.setdefault(int(i), {})[name] = t
        self.optimizer.load_state_dict({"state": slots, "param_groups": state["optimizer"]["param_groups"]})
        self.algorithm.load_state_dict(state["algorithm"])
        self.step, self.round, self.next_child = state["step"], state["round"], state["next_child"]
        self.phase, self.elapsed = state["phase"], state["elapsed"]
        self.seconds = {"disk": 0.0, **state["seconds"]}  # runs checkpointed before "disk" was counted
        self.candidates = [Proposal(tuple(a), lp, v) for a, lp, v in state["candidates"]]
        self.seen = {r["hash"] for r in self.records[:counted]}
        if any(r["child"] != i for i, r in enumerate(self.records)):
            raise RunError(f"{self.search.journal.path} does not number its children 0, 1, ...: it is another run's")

    def checkpoint(self) -> None:
        if self.search is None:
            return
        t = time.perf_counter()
        self.search.save({
            "algorithm": self.algorithm.state_dict(), "pending": [], "next_child": self.next_child,
            "elapsed": self.elapsed, "supernet": pack(self.supernet.state_dict()), "optimizer": self._optimizer_state(),
            "step": self.step, "round": self.round, "phase": self.phase, "seconds": dict(self.seconds),
            "candidates": [[list(p.actions), p.log_prob, p.policy_version] for p in self.candidates],
        })  # fmt: skip
        self.seconds["disk"] += time.perf_counter() - t  # this save's own time reaches the next checkpoint

    def _optimizer_state(self) -> dict[str, Any]:
        state = self.optimizer.state_dict()  # per weight: SGD's momentum buffer, Adam's moments and step count
        slots = {f"{i}.{name}": t for i, s in state["state"].items() for name, t in s.items() if t is not None}
        return {"slots": pack(slots), "param_groups": state["param_groups"]}

    # -- proposals --
    def propose(self) -> Proposal:
        t = time.perf_counter()
        proposal = self.algorithm.propose()
        self.seconds["controller"] += time.perf_counter() - t
        return proposal

    def draw(self, seen: set[str]) -> tuple[Proposal, int, str] | None:
        """A cell not in ``seen`` (then added), how many cells of ``seen`` were drawn before it, its hash; None
        after ``MAX_DRAWS`` of them in a row."""
        for resampled in range(MAX_DRAWS):
            proposal = self.propose()
            h = canonical_hash(decode(list(proposal.actions), self.num_blocks))
            if h not in seen:
                seen.add(h)
                return proposal, resampled, h
        return None

    def observe(self, proposal: Proposal, reward: float | None) -> None:
        t = time.perf_counter()
        self.algorithm.observe(proposal, reward)
        self.seconds["controller"] += time.perf_counter() - t

    def record(self, child: int, drawn: tuple[Proposal, int, str], reward: float | None, error: str | None,
               seconds: float, phase: str) -> dict[str, Any]:  # fmt: skip
        proposal, resampled, h = drawn
        return {
            "child": child, "hash": h, "reward": reward, "error": error, "resampled": resampled,
            "seconds": round(seconds, 4), "worker": "supernet", "policy_version": proposal.policy_version,
            "log_prob": proposal.log_prob, "elapsed": round(self.elapsed, 3), "actions": list(proposal.actions),
            "genotype": decode(list(proposal.actions), self.num_blocks).to_dict(), "phase": phase, "step": self.step,
        }  # fmt: skip

    def reward(self, child: int, genotype: Genotype, batches: Any) -> tuple[float | None, str | None, float]:
        t = time.perf_counter()
        s = self.sharing
        calibrate = ()
        if s.bn == "recalibrate":
            calibrate = self.train.sample(s.recalibrate_batches, derive_seed(self.config.seed, child) + (1 << 41))
        try:
            value, error = score(self.supernet, genotype, batches, s.bn, calibrate), None
        except (RuntimeError, FloatingPointError) as e:  # out of memory, a broken sub-network
            value, error = None, f"{type(e).__name__}: {e}"
        seconds = time.perf_counter() - t
        self.seconds["reward"] += seconds
        return value, error, seconds

    # -- the schedule --
    def shared_steps(self, deadline: float | None, clock: Any) -> bool:
        """The round's shared-weight steps (the first round's after the uniform ones); False when the time ran
        out first."""
        s, task = self.sharing, self.task
        schedule = TrainConfig(epochs=1, lr=self.lr, schedule="cosine", warmup_epochs=s.lr_warmup / self.total_steps)
        while self.step < s.uniform_steps + (self.round + 1) * s.shared_steps:
            if deadline is not None and clock() >= deadline:
                return False
            if self.step < s.uniform_steps:  # seeded per step apart from the algorithm's stream: resumes exactly
                genotype = random_genotype(derive_seed(self.config.seed, self.step) + (1 << 42), self.num_blocks)
            else:
                genotype = decode(list(self.propose().actions), self.num_blocks)
            x, y = self.train.batch(self.step)
            t = time.perf_counter()
            lr = learning_rate(schedule, self.step, self.total_steps)
            shared_step(self.supernet, self.optimizer, genotype, x, y, lr, task.weight_decay, s.clip_grad_norm)
            self.seconds["shared"] += time.perf_counter() - t
            self.step += 1
        return True

    def children(self, deadline: float | None, clock: Any, done: Any) -> bool:
        """The round's rewarded children (journaled ones replayed); False when the time ran out first."""
        for _ in range(self.sharing.children):
            if self.next_child >= self.budget:
                break
            if deadline is not None and clock() >= deadline:
                return False
            child, drawn = self.next_child, self.draw(self.seen)
            if drawn is None:
                self.notes.append(f"the {self.config.algo} search drew {MAX_DRAWS} rewarded cells in a row: it has "
                                  "converged")  # fmt: skip
                self.next_child = self.budget
                break
            if child < len(self.records):  # journaled before an interruption: check it and replay its reward
                line = self.records[child]
                if line["hash"] != drawn[2]:
                    raise RunError(f"{self.search.journal.path}: child {child} is {line['hash']}, but the resumed run "
                                   f"draws {drawn[2]}; the journal is another run's")  # fmt: skip
                self.observe(drawn[0], line["reward"])
            else:
                genotype = decode(list(drawn[0].actions), self.num_blocks)
                batches = self.val.sample(self.sharing.reward_batches, derive_seed(self.config.seed, child))
                value, error, seconds = self.reward(child, genotype, batches)
                self.elapsed_now(clock)
                line = self.record(child, drawn, value, error, seconds, "search")
                if self.search is not None:
                    t = time.perf_counter()
                    self.search.journal.append(line)  # fsynced
                    self.seconds["disk"] += time.perf_counter() - t
                self.records.append(line)
                self.observe(drawn[0], value)
                done(line)
            self.next_child += 1
        return True

    def elapsed_now(self, clock: Any) -> None:
        self.elapsed = clock()

    def derive(self, deadline: float | None, clock: Any, done: Any) -> bool:
        """Score ``final`` distinct cells of the final policy on the whole validation split; False: out of time.
        Cells rewarded in the search are candidates too: they are the ones a converged policy proposes."""
        if self.phase == "search":
            self.candidates, distinct = [], set()
            for _ in range(self.sharing.final):
                drawn = self.draw(distinct)
                if drawn is None:
                    self.notes.append(f"the final policy proposes {len(distinct)} distinct cells: the derive step "
                                      "scores those")  # fmt: skip
                    break
                self.candidates.append(drawn[0])
            self.phase = "final"
            self.elapsed_now(clock)
            self.checkpoint()
        for i, proposal in enumerate(self.candidates):
            genotype = decode(list(proposal.actions), self.num_blocks)
            h = canonical_hash(genotype)
            if i < len(self.finals):
                if self.finals[i]["hash"] != h:
                    raise RunError(f"{self.final.journal.path}: line {i + 1} is not the run's final cell {i}")
                continue
            if deadline is not None and clock() >= deadline:
                return False
            value, error, seconds = self.reward(self.budget + i, genotype, self.val.all())
            self.elapsed_now(clock)
            line = self.record(self.budget + i, (proposal, 0, h), value, error, seconds, "final")
            if self.final is not None:
                t = time.perf_counter()
                self.final.journal.append(line)
                self.seconds["disk"] += time.perf_counter() - t
            self.finals.append(line)
            done(line)
        return True


def run_sharing(
    config: SearchConfig, progress: bool = False, num_blocks: int = NUM_BLOCKS, device: str | None = None
) -> SearchResult:
    """Run (or resume) a weight-sharing search of ``budget`` rewarded children (see the module docstring); the
    same arguments and result as `loop.run_search`. ``SearchResult.controller_seconds`` is the algorithm's share
    (sampling, observing, policy updates); the notes give the split of the wall time."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    threads = SHARING[config.preset].threads if config.preset in SHARING else 1
    with torch_threads(threads):
        run = _Run(config, num_blocks, dev)
        if config.resume and not (run.out and (run.out / "search").is_dir()):
            raise RunError(f"nothing to resume: {run.out} holds no weight-sharing search; run without --resume first")
        lock = RunLock(run.out) if run.out is not None else None
        if lock is not None:
            lock.__enter__()
        try:
            run.open()
            result = _loop(run, progress)
        finally:
            if lock is not None:
                lock.__exit__(None, None, None)
    return result


def _loop(run: _Run, progress: bool) -> SearchResult:
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=run.budget + run.sharing.final, initial=len(run.records) + len(run.finals),
                   desc=f"{run.config.algo} with shared weights on {run.config.preset}", unit="child")  # fmt: skip
    best = {"search": float("-inf"), "final": float("-inf")}

    def done(line: dict[str, Any]) -> None:
        if bar is None:
            return
        bar.update(1)
        if line["reward"] is not None:
            best[line["phase"]] = max(best[line["phase"]], line["reward"])
        bar.set_postfix(step=run.step, best=f"{best['search']:.3f}", final=f"{best['final']:.3f}")

    start, before, controller = time.perf_counter(), run.elapsed, run.seconds["controller"]
    clock = lambda: before + time.perf_counter() - start  # noqa: E731
    deadline = None if run.config.max_minutes is None else run.config.max_minutes * 60
    try:
        finished = True
        while run.phase == "search" and run.next_child < run.budget:
            if not (run.shared_steps(deadline, clock) and run.children(deadline, clock, done)):
                finished = False
                break
            run.round += 1
            run.elapsed_now(clock)
            run.checkpoint()
        if finished and not run.derive(deadline, clock, done):
            finished = False
        run.elapsed_now(clock)  # finished (the derive step's time too) or out of time between two steps or children
        run.checkpoint()
        if not finished:
            run.notes.append(f"stopped after {run.config.max_minutes} minutes; --resume continues from here")
    finally:
        if bar is not None:
            bar.close()
    if run.out is not None:
        _outputs(run)
    wall = time.perf_counter() - start
    s = run.seconds
    total = max(run.elapsed, 1e-9)
    run.notes.append(f"wall time: shared-weight steps {s['shared'] / total:.0%}, rewards {s['reward'] / total:.0%}, "
                     f"controller {s['controller'] / total:.0%}, checkpoints and journal {s['disk'] / total:.0%} "
                     f"({run.step} shared steps)")  # fmt: skip
    return SearchResult(run.records + run.finals, wall, s["controller"] - controller, run.out, run.notes, run.elapsed)


def _outputs(run: _Run) -> None:
    """best.json, topk.json, search.png, summary.md in OUT from the derive steps' journals; the search's own
    reward curve in ``search/search.png``."""
    if run.records:
        report.plot({f"{run.config.algo}-ws-seed{run.config.seed}": run.records}, run.search.path / "search.png")
    if run.finals:
        report.write_outputs(run.out.parent, PRESETS[run.config.preset].top_k)
    timing = {**run.seconds, "elapsed": run.elapsed, "shared_steps": run.step, "children": len(run.records)}
    atomic_write(run.search.path / "timing.json", json.dumps(timing, indent=1) + "\n")
