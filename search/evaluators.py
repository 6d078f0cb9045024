"""Where children train: one protocol (submit, wait for any, cancel, capacity) and three backends.

* `SerialEvaluator` trains each child in this process when it is waited for (tests, debugging).
* `ProcessEvaluator` keeps one worker process per slot (the default). A child that raises, returns
  NaN or kills its worker (the kernel's OOM killer, a segfault) comes back as an `Outcome` with an error, and
  a dead worker is replaced.
* `RayEvaluator` runs each child as a Ray task with its own CPU/GPU request and retries, on a local Ray
  instance or a cluster (``address``): the paper's global work queue feeding hundreds of GPU workers.

An evaluator runs a `Task`: anything picklable with ``reward(genotype, seed) -> float`` (a `Job` may name
another method of the same signature, such as ``test_accuracy``). Each child gets
``threads`` torch threads (default 1: children are small and many, and oversubscribed cores made a digits
child 15x slower with two threads than with one on a shared 2-core machine).
"""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import Pipe
from multiprocessing.connection import Connection, wait
from typing import Any, Protocol

from nasnet_zoo.errors import ConfigError
from nasnet_zoo.genotype import Genotype
from nasnet_zoo.runtime import torch_threads

BACKENDS = ("serial", "process", "ray")


class Task(Protocol):
    def reward(self, genotype: Genotype, seed: int) -> float: ...


@dataclass(frozen=True)
class Job:
    id: int
    genotype: Genotype
    seed: int
    method: str = "reward"  # the task's method that scores the child ("test_accuracy": the held-out split)


@dataclass(frozen=True)
class Outcome:
    """A finished job: its reward, or the error that stopped it (reward None)."""

    id: int
    reward: float | None
    error: str | None
    seconds: float
    worker: str


class Evaluator(Protocol):
    capacity: int  # how many children train at once

    def submit(self, job: Job) -> None: ...

    def wait_any(self, timeout: float | None = None) -> list[Outcome]:
        """Block until at least one submitted job finishes (or ``timeout`` seconds pass); return the finished."""
        ...

    def cancel(self, job_id: int) -> None: ...

    def close(self) -> None: ...


def run_job(task: Task, job: Job, worker: str, threads: int = 1) -> Outcome:
    """Train one child on ``threads`` torch threads, turning every failure (exception, NaN reward, out of
    memory) into an error string."""
    start = time.perf_counter()
    try:
        with torch_threads(threads):
            reward = float(getattr(task, job.method)(job.genotype, job.seed))
        error = None if math.isfinite(reward) else f"the child's reward is {reward} (its training diverged)"
    except MemoryError as e:  # torch's OutOfMemoryError is a RuntimeError, caught below with its own name
        reward, error = None, f"out of memory: {e}"
    except Exception as e:
        last = traceback.extract_tb(e.__traceback__)[-1]
        reward, error = None, f"{type(e).__name__}: {e} (at {os.path.basename(last.filename)}:{last.lineno})"
    if error is not None:
        reward = None
    return Outcome(job.id, reward, error and error[:1000], time.perf_counter() - start, worker)


# --- serial ---------------------------------------------------------------------------------------------------
class SerialEvaluator:
    def __init__(self, task: Task, workers: int = 1, threads: int = 1) -> None:
        self.task, self.capacity, self.threads = task, workers, threads
        self._queue: deque[Job] = deque()

    def submit(self, job: Job) -> None:
        self._queue.append(job)

    def wait_any(self, timeout: float | None = None) -> list[Outcome]:
        if not self._queue:
            return []
        return [run_job(self.task, self._queue.popleft(), f"serial:{os.getpid()}", self.threads)]

    def cancel(self, job_id: int) -> None:
        self._queue = deque(j for j in self._queue if j.id != job_id)

    def close(self) -> None:
        self._queue.clear()


# --- local processes -------------------------------------------------------------------------------------------
# A worker is `python -c _BOOT FD`: it never runs the parent's ``__main__`` (multiprocessing's spawn re-runs a
# main script that lacks an ``if __name__ == "__main__"`` guard in every worker, and such a script that starts
# a search would start searches recursively), and it connects before it imports torch, so it starts fast.
# Ctrl-C reaches every process of the terminal's group: a worker ignores it (no traceback of its own), and the
# parent, which stops the search resumably, stops its workers.
_BOOT = (
    "import signal, sys\n"
    "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "from multiprocessing.connection import Connection\n"
    "conn = Connection(int(sys.argv[1]))\n"
    "sys.path[:] = conn.recv()\n"
    "from nasnet_zoo.search.evaluators import serve\n"
    "serve(conn)\n"
)


def serve(conn: Connection) -> None:
    """A worker process's life: receive its settings and task, then train children until told to stop."""
    name, threads, parent = conn.recv()

    def orphan_watch() -> None:  # a parent killed with SIGKILL cannot stop its workers; they stop themselves
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=orphan_watch, daemon=True).start()
    task = conn.recv()
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        conn.send(run_job(task, job, f"{name}:{os.getpid()}", threads))


@dataclass
class _Slot:
    name: str
    process: subprocess.Popen
    conn: Connection
    job: Job | None = None
    started: float = 0.0


class ProcessEvaluator:
    """``workers`` worker processes, each training one child at a time with ``threads`` torch threads."""

    def __init__(self, task: Task, workers: int, threads: int = 1) -> None:
        if workers < 1:
            raise ConfigError(f"need at least one worker, got {workers}")
        self.task, self.capacity, self.threads = task, workers, threads
        self._slots = [self._start(f"process-{i}") for i in range(workers)]
        self._queue: deque[Job] = deque()

    def _start(self, name: str) -> _Slot:
        ours, theirs = Pipe()
        process = subprocess.Popen([sys.executable, "-c", _BOOT, str(theirs.fileno())], pass_fds=[theirs.fileno()])
        theirs.close()  # the worker holds the only other end: its death reads as EOF here
        ours.send(sys.path)
        ours.send((name, self.threads, os.getpid()))
        ours.send(self.task)
        return _Slot(name, process, ours)

    def _restart(self, slot: _Slot) -> None:
        slot.conn.close()
        slot.process.kill()
        slot.process.wait()
        fresh = self._start(slot.name)
        slot.process, slot.conn, slot.job = fresh.process, fresh.conn, None

    def _dispatch(self) -> None:
        for slot in self._slots:
            if slot.job is None and self._queue:
                slot.job, slot.started = self._queue.popleft(), time.perf_counter()
                with contextlib.suppress(OSError):  # a worker that died idle: `wait_any` reports it with the job
                    slot.conn.send(slot.job)

    def submit(self, job: Job) -> None:
        self._queue.append(job)
        self._dispatch()

    def wait_any(self, timeout: float | None = None) -> list[Outcome]:
        busy = [s for s in self._slots if s.job is not None]
        if not busy:
            return []
        ready = set(wait([s.conn for s in busy], timeout))  # a result, or EOF: the worker died
        out = []
        for slot in busy:
            if slot.conn in ready:
                try:
                    out.append(slot.conn.recv())
                    slot.job = None
                except (EOFError, OSError):
                    out.append(self._died(slot))
        self._dispatch()
        return out

    def _died(self, slot: _Slot) -> Outcome:
        """The outcome of the child whose worker died (killed, e.g. by the OOM killer), and a fresh worker."""
        assert slot.job is not None
        try:
            code = slot.process.wait(5)
        except subprocess.TimeoutExpired:
            code = None
        why = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        seconds = time.perf_counter() - slot.started
        outcome = Outcome(slot.job.id, None, f"the worker process died ({why}); out of memory?", seconds,
                          f"{slot.name}:{slot.process.pid}")  # fmt: skip
        self._restart(slot)
        return outcome

    def cancel(self, job_id: int) -> None:
        self._queue = deque(j for j in self._queue if j.id != job_id)
        for slot in self._slots:
            if slot.job is not None and slot.job.id == job_id:
                self._restart(slot)
        self._dispatch()

    def close(self) -> None:
        for slot in self._slots:
            with contextlib.suppress(OSError):
                slot.conn.send(None)
        for slot in self._slots:
            try:
                slot.process.wait(2 if slot.job is None else 0.01)
            except subprocess.TimeoutExpired:
                slot.process.kill()
                slot.process.wait()
            slot.conn.close()
        self._queue.clear()


# --- Ray ------------------------------------------------------------------------------------------------------
def _ray_child(task: Task, job: Job, threads: int) -> Outcome:
    import ray

    node = ray.get_runtime_context().get_node_id()[:8]
    return run_job(task, job, f"ray-{node}:{os.getpid()}", threads)


class RayEvaluator:
    """Each child a Ray task requesting ``cpus`` CPUs and ``gpus`` GPUs, retried ``retries`` times if its worker
    dies. Joins the cluster at ``address`` (e.g. ``"auto"`` or ``"ray://head:10001"``), or starts a local Ray
    sized for ``workers`` children (at most this machine's CPUs; more children wait in Ray's queue)."""

    def __init__(
        self,
        task: Task,
        workers: int,
        address: str | None = None,
        cpus: float = 1.0,
        gpus: float = 0.0,
        retries: int = 2,
    ) -> None:
        try:
            import ray
        except ImportError:  # pragma: no cover - ray is in the search extra
            raise ImportError("the ray backend needs Ray: pip install 'nasnet-zoo[search]'") from None
        self._ray = ray
        self._owner = not ray.is_initialized()
        if self._owner:
            local = {} if address else {"num_cpus": min(max(1, math.ceil(workers * cpus)), os.cpu_count() or 1)}
            ray.init(address=address, include_dashboard=False, log_to_driver=False, **local)
        self.capacity = workers
        self._threads = max(1, int(cpus))
        self._task = ray.put(task)
        self._remote = ray.remote(_ray_child).options(num_cpus=cpus, num_gpus=gpus, max_retries=retries)
        self._running: dict[Any, Job] = {}  # ObjectRef -> job

    def submit(self, job: Job) -> None:
        self._running[self._remote.remote(self._task, job, self._threads)] = job

    def wait_any(self, timeout: float | None = None) -> list[Outcome]:
        if not self._running:
            return []
        refs = list(self._running)
        ready, rest = self._ray.wait(refs, num_returns=1, timeout=timeout)
        if ready and rest:
            ready += self._ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        out = []
        for ref in ready:
            job = self._running.pop(ref)
            try:
                out.append(self._ray.get(ref))
            except Exception as e:  # the worker died more often than the retries allow, or Ray failed
                out.append(Outcome(job.id, None, f"ray: {type(e).__name__}: {str(e)[:500]}", 0.0, "ray"))
        return out

    def cancel(self, job_id: int) -> None:
        for ref, job in list(self._running.items()):
            if job.id == job_id:
                self._ray.cancel(ref, force=True)
                del self._running[ref]

    def close(self) -> None:
        for ref in list(self._running):
            self._ray.cancel(ref, force=True)
        self._running.clear()
        if self._owner:
            self._ray.shutdown()


def run_all(
    evaluator: Evaluator, jobs: list[Job], on_outcome: Callable[[Outcome], object] | None = None
) -> dict[int, Outcome]:
    """Submit every job, wait for all of them, and return their outcomes by job id; ``on_outcome(outcome)`` is
    called as each one finishes (to journal it, or to advance a progress bar)."""
    for job in jobs:
        evaluator.submit(job)
    outcomes: dict[int, Outcome] = {}
    while len(outcomes) < len(jobs):
        for outcome in evaluator.wait_any():
            outcomes[outcome.id] = outcome
            if on_outcome is not None:
                on_outcome(outcome)
    return outcomes


def make_evaluator(backend: str, task: Task, workers: int, **options: Any) -> Evaluator:
    """``backend`` is one of `BACKENDS`; ``options`` go to the backend (e.g. Ray's ``address``, ``gpus``)."""
    if backend == "serial":
        return SerialEvaluator(task, workers)
    if backend == "process":
        return ProcessEvaluator(task, workers, **options)
    if backend == "ray":
        return RayEvaluator(task, workers, **options)
    raise ConfigError(f"unknown backend {backend!r}; use one of {BACKENDS}")
