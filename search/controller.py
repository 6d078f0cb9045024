"""The controller RNN of the paper (Sec. 3): a one-layer LSTM that emits the 50 decisions one softmax at a time.

* One LSTM layer with 100 hidden units; every weight is drawn uniformly from [-0.1, 0.1].
* One softmax head per decision kind (input, op, combine). An input head scores the largest range of states
  (h0, h1 and up to B - 1 block outputs); block b masks out all but its first 2 + b options.
* The chosen option is embedded (one embedding table per kind) and fed back as the next step's input; the
  first step reads a learned start vector. The paper does not state the embedding size; it is the hidden
  size here.

`Controller.sample` runs the LSTM one step at a time, drawing each decision and keeping its log-probability.
`Controller.log_probs` re-runs given sequences in one pass (teacher forcing) for the policy update; a
sequence's recomputed log-probabilities equal the ones stored when it was sampled (to float rounding).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nasnet_zoo.errors import ConfigError
from nasnet_zoo.runtime import torch_threads

from .space import NUM_BLOCKS, decisions

_MASKED = -1e9  # logit of an option outside the block's range: probability exactly 0, gradients stay finite


@dataclass(frozen=True)
class Sample:
    """A batch of decision sequences and the log-probability of every decision under the sampling policy."""

    actions: torch.Tensor  # (batch, decisions), long
    log_probs: torch.Tensor  # (batch, decisions)


class Controller(nn.Module):
    def __init__(
        self, num_blocks: int = NUM_BLOCKS, hidden: int = 100, init_range: float = 0.1, seed: int | None = None
    ) -> None:
        super().__init__()
        self.spec = decisions(num_blocks)
        sizes: dict[str, int] = {}
        for d in self.spec:
            sizes[d.kind] = max(sizes.get(d.kind, 0), d.num_choices)
        self.kinds = list(sizes)
        self.hidden = hidden
        self.start = nn.Parameter(torch.empty(hidden))
        self.lstm = nn.LSTM(hidden, hidden, batch_first=True)
        self.heads = nn.ModuleDict({k: nn.Linear(hidden, n) for k, n in sizes.items()})
        self.embeddings = nn.ModuleDict({k: nn.Embedding(n, hidden) for k, n in sizes.items()})
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        for p in self.parameters():
            nn.init.uniform_(p, -init_range, init_range, generator=generator)
        # Per kind: the steps that make such a decision, and which options each of them may choose.
        for k, n in sizes.items():
            steps = [t for t, d in enumerate(self.spec) if d.kind == k]
            valid = torch.tensor([[c < self.spec[t].num_choices for c in range(n)] for t in steps])
            self.register_buffer(f"steps_{k}", torch.tensor(steps), persistent=False)
            self.register_buffer(f"valid_{k}", valid, persistent=False)
        self.register_buffer("limits", torch.tensor([d.num_choices for d in self.spec]), persistent=False)

    @property
    def num_decisions(self) -> int:
        return len(self.spec)

    def _log_softmax(self, kind: str, h: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.heads[kind](h).masked_fill(~valid, _MASKED), dim=-1)

    @torch.no_grad()
    def sample(self, batch: int = 1, generator: torch.Generator | None = None) -> Sample:
        """Draw ``batch`` sequences of decisions from the current policy."""
        with torch_threads(1):
            return self._sample(batch, generator)

    def _sample(self, batch: int, generator: torch.Generator | None) -> Sample:
        x = self.start.expand(batch, 1, -1)
        state = None
        actions, log_probs = [], []
        position = dict.fromkeys(self.kinds, 0)  # how many decisions of each kind came before
        for d in self.spec:
            out, state = self.lstm(x, state)
            valid = getattr(self, f"valid_{d.kind}")[position[d.kind]]
            position[d.kind] += 1
            logp = self._log_softmax(d.kind, out[:, 0], valid)
            a = torch.multinomial(logp.exp(), 1, generator=generator)
            actions.append(a[:, 0])
            log_probs.append(logp.gather(1, a)[:, 0])
            x = self.embeddings[d.kind](a)
        return Sample(torch.stack(actions, 1), torch.stack(log_probs, 1))

    def log_probs(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities and entropies, (batch, decisions) each, of given sequences under the current policy."""
        actions = torch.as_tensor(actions, dtype=torch.long)
        if actions.dim() != 2 or actions.shape[1] != self.num_decisions:
            raise ConfigError(f"expected actions of shape (batch, {self.num_decisions}), got {tuple(actions.shape)}")
        if bool(((actions < 0) | (actions >= self.limits)).any()):
            raise ConfigError("an action lies outside its decision's range (see search.space.decisions)")
        b, t = actions.shape
        # The LSTM's inputs: the start vector, then the embedding of each decision taken.
        x = self.start.expand(b, 1, -1)
        fed = torch.zeros(b, t - 1, self.hidden)
        for k in self.kinds:
            steps = getattr(self, f"steps_{k}")
            steps = steps[steps < t - 1]
            fed = fed.index_copy(1, steps, self.embeddings[k](actions[:, steps]))
        out, _ = self.lstm(torch.cat([x, fed], 1))
        log_probs = torch.zeros(b, t)
        entropy = torch.zeros(b, t)
        for k in self.kinds:
            steps = getattr(self, f"steps_{k}")
            logp = self._log_softmax(k, out[:, steps], getattr(self, f"valid_{k}"))
            log_probs = log_probs.index_copy(1, steps, logp.gather(2, actions[:, steps, None])[..., 0])
            entropy = entropy.index_copy(1, steps, -(logp.exp() * logp).sum(-1))
        return log_probs, entropy
