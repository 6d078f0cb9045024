"""Policy updates for the controller: PPO as in the paper, REINFORCE as in its predecessor (NAS, 2016).

The paper's settings (Sec. 3 and App. A): Adam with learning rate 0.00035, entropy weight 0.00001, a
baseline that is an exponential moving average of rewards with weight 0.95, and one update per 20 finished
children. The clip range is not stated; 0.2 is PPO's default. Neither is the number of passes over each
batch of 20; `PolicyConfig.epochs` sets it.

Children finish out of order, each sampled by whatever policy was current when a worker became free. So a
child carries the log-probability of its sequence under *that* policy (`space.Proposal.log_prob`), and PPO's
ratio compares the current policy against it. Each reward is compared with the baseline as it stands when
the reward arrives, then folded into it.

A child that could not be trained (``reward=None``: an exception, a NaN, out of memory) has no accuracy to
fold into the baseline, and inventing one (0) would drag the baseline down and make every later child look
good. It still teaches the policy that its sequence wastes budget: it joins the batch with the advantage of
the worst child trained so far (``worst - baseline``, never positive, and no larger than the rewards' own
spread, so one failure cannot dominate an update); before any child is trained it gets advantage 0.

The search loop never shows the policy a cell it has trained already (it draws again), so no sequence is
reinforced twice with one noisy reward. The policy is then trained on the cells it discovers, a sampling
without replacement. PPO's ratio uses the probabilities stored at sampling; those of sampling among untrained
cells differ from them by one factor for all of a policy's children (its mass on untrained cells), which
stays close to 1 until the policy concentrates on cells it has trained.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch

from nasnet_zoo.errors import ConfigError
from nasnet_zoo.runtime import torch_threads

from .controller import Controller
from .space import NUM_BLOCKS, Proposal

METHODS = ("ppo", "reinforce")


@dataclass(frozen=True)
class PolicyConfig:
    method: str = "ppo"  # "ppo" or "reinforce"
    lr: float = 0.00035
    entropy_weight: float = 0.00001
    baseline_decay: float = 0.95
    batch_size: int = 20  # finished children per update
    clip: float = 0.2  # PPO only
    epochs: int = 4  # gradient steps per update (PPO only; REINFORCE takes one)
    hidden: int = 100
    init_range: float = 0.1

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown policy update {self.method!r}; use one of {METHODS}")
        if self.batch_size < 1 or self.epochs < 1:
            raise ConfigError(f"batch_size and epochs must be >= 1, got {self.batch_size} and {self.epochs}")


class PolicyGradient:
    """The RL search: a controller proposes children; finished children update it, 20 at a time."""

    def __init__(self, config: PolicyConfig, seed: int, num_blocks: int = NUM_BLOCKS) -> None:
        self.config = config
        self.controller = Controller(num_blocks, config.hidden, config.init_range, seed=seed)
        self.optimizer = torch.optim.Adam(self.controller.parameters(), lr=config.lr)
        self.generator = torch.Generator().manual_seed(seed)
        self.baseline: float | None = None
        self.worst: float | None = None  # the lowest reward observed: what a failed child's advantage is set from
        self.buffer: list[tuple[tuple[int, ...], float, float]] = []  # (actions, old log-prob, advantage)
        self.drawn: list[tuple[tuple[int, ...], float]] = []  # sampled from the current policy, not yet proposed
        self.version = 0  # number of updates so far

    def propose(self) -> Proposal:
        """A child from the current policy (drawn `batch_size` at a time: one LSTM pass for many children)."""
        if not self.drawn:
            s = self.controller.sample(self.config.batch_size, self.generator)
            self.drawn = [(tuple(a.tolist()), float(lp)) for a, lp in zip(s.actions, s.log_probs.sum(1), strict=True)]
        actions, log_prob = self.drawn.pop(0)
        return Proposal(actions, log_prob, self.version)

    def observe(self, proposal: Proposal, reward: float | None) -> None:
        """Take one finished child's reward (None: it failed); update the policy once `batch_size` have arrived."""
        if reward is None:
            advantage = 0.0 if self.baseline is None else min(self.worst - self.baseline, 0.0)
        else:
            if self.baseline is None:
                self.baseline = reward
            advantage = reward - self.baseline
            d = self.config.baseline_decay
            self.baseline = d * self.baseline + (1 - d) * reward
            self.worst = reward if self.worst is None else min(self.worst, reward)
        self.buffer.append((tuple(proposal.actions), proposal.log_prob, advantage))
        if len(self.buffer) >= self.config.batch_size:
            with torch_threads(1):
                self._update()

    def reseed(self, seed: int) -> None:
        """Draw the next children from a new random stream (a run rebuilt from its journal)."""
        self.generator.manual_seed(seed)
        self.drawn = []

    def _update(self) -> None:
        c = self.config
        batch, self.buffer = self.buffer[: c.batch_size], self.buffer[c.batch_size :]
        actions = torch.tensor([b[0] for b in batch])
        old_log_prob = torch.tensor([b[1] for b in batch])
        advantage = torch.tensor([b[2] for b in batch])
        for _ in range(c.epochs if c.method == "ppo" else 1):
            log_probs, entropy = self.controller.log_probs(actions)
            log_prob = log_probs.sum(1)
            if c.method == "ppo":
                ratio = torch.exp(log_prob - old_log_prob)
                clipped = ratio.clamp(1 - c.clip, 1 + c.clip)
                objective = torch.minimum(ratio * advantage, clipped * advantage)
            else:
                objective = log_prob * advantage
            loss = -objective.mean() - c.entropy_weight * entropy.sum(1).mean()
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        self.version += 1
        self.drawn = []  # drawn from the old policy

    # --- checkpointing --------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """A snapshot (torch's own state dicts share tensors with the live optimizer)."""
        return {
            "controller": copy.deepcopy(self.controller.state_dict()),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "generator": self.generator.get_state(),
            "baseline": self.baseline,
            "worst": self.worst,
            "buffer": [[list(a), lp, adv] for a, lp, adv in self.buffer],
            "drawn": [[list(a), lp] for a, lp in self.drawn],
            "version": self.version,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.controller.load_state_dict(state["controller"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.baseline = state["baseline"]
        self.worst = state["worst"]
        self.buffer = [(tuple(a), lp, adv) for a, lp, adv in state["buffer"]]
        self.drawn = [(tuple(a), lp) for a, lp in state["drawn"]]
        self.version = state["version"]
