"""Recording and checking the measured numbers that model cards and README tables state.

The tests that measure something a card states (tests/test_zoo.py: params and mult-adds; tests/peers/:
exactness against Cadene, timm and Keras) hand their numbers to the session fixture ``measurements``. On a
normal run each number is compared with ``nasnet_zoo/measurements.json`` and the test fails when they disagree
(counts exactly; a disagreement with a peer within 2 %; an agreement, at float32 rounding level, within 1e-5
of the values' size, since rounding differs between CPUs). With ``NASNET_ZOO_MEASUREMENTS=update`` (``make cards``) the
numbers are written to that file instead, at the end of the session.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from nasnet_zoo.cards import MEASUREMENTS_FILE

ABOUT = (
    "Measured by the test suite (tests/test_zoo.py, tests/peers/) and checked by it on every run; "
    "`make cards` re-measures (NASNET_ZOO_MEASUREMENTS=update) and regenerates model_cards/ and README.md from it."
)
STALE = "run `make cards` to re-measure and regenerate the cards"


class Measurements:
    def __init__(self, update: bool | None = None) -> None:
        self.update = os.environ.get("NASNET_ZOO_MEASUREMENTS") == "update" if update is None else update
        recorded = json.loads(MEASUREMENTS_FILE.read_text()) if MEASUREMENTS_FILE.is_file() else {}
        self.data: dict[str, Any] = {"size": recorded.get("size", {}), "peers": recorded.get("peers", {})}
        self.changed = False

    def size(self, model: str, **values: int) -> None:
        """A row's measured size (``input_size``, ``params``, ``params_with_bn_stats``, ``mult_adds``): exact."""
        if self.update:
            self.changed |= self.data["size"].get(model) != values
            self.data["size"][model] = values
            return
        recorded = self.data["size"].get(model)
        assert recorded == values, f"{MEASUREMENTS_FILE} records {recorded} for {model}, measured {values}: {STALE}"

    def peer(
        self,
        model: str,
        peer: str,
        input_size: int,
        *,
        logits: tuple[float, float],
        features: tuple[float, float] | None,
        agrees: bool,
        note: str,
    ) -> None:
        """One comparison with a peer: (max abs difference, max abs value) of logits and of features."""

        def g(x: float) -> float:
            return float(f"{float(x):.3g}")

        row = dict(peer=peer, input_size=input_size, logits_diff=g(logits[0]), logits_max=g(logits[1]))
        row.update(features_diff=None, features_max=None)
        if features is not None:
            row.update(features_diff=g(features[0]), features_max=g(features[1]))
        row.update(agrees=agrees, note=note)
        rows = self.data["peers"].setdefault(model, [])
        at = next((i for i, r in enumerate(rows) if (r["peer"], r["input_size"]) == (peer, input_size)), None)
        if self.update:
            self.changed |= at is None or rows[at] != row
            if at is None:
                rows.append(row)
            else:
                rows[at] = row
            return
        where = f"{MEASUREMENTS_FILE}, {model} vs {peer} at {input_size}"
        assert at is not None, f"{where}: not recorded; {STALE}"
        recorded = rows[at]
        for key in ("agrees", "note"):
            assert recorded[key] == row[key], f"{where}: {key} is {recorded[key]!r}, now {row[key]!r}; {STALE}"
        for key in ("logits_diff", "logits_max", "features_diff", "features_max"):
            was, now = recorded[key], row[key]
            if was is None or now is None:
                assert was is now, f"{where}: {key} recorded {was}, measured {now}; {STALE}"
            elif agrees and key.endswith("_diff"):  # rounding noise: 1e-5 of the values' size
                scale = max(1.0, row[key.replace("_diff", "_max")])
                assert abs(now - was) <= 1e-5 * scale, f"{where}: {key} recorded {was}, measured {now}; {STALE}"
            else:
                assert math.isclose(now, was, rel_tol=0.02), f"{where}: {key} recorded {was}, measured {now}; {STALE}"

    def save(self) -> None:
        if self.update and self.changed:
            MEASUREMENTS_FILE.write_text(json.dumps({"about": ABOUT, **self.data}, indent=2) + "\n")
