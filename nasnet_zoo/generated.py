"""The checkout's generated files: ``model_cards/*.md`` and README.md's generated blocks, and the one helper that
splices a generated block into a Markdown file (the model cards' tables here, the benchmark table in
``benchmarks/run.py``).

A block sits between ``<!-- generated: NAME (COMMAND) -->`` and ``<!-- end generated: NAME -->``: COMMAND is
what regenerates it, and everything between the two lines belongs to it. ``nasnet-zoo cards`` (`write_all`)
writes the cards (`cards.render_card`) and the README's ``models``, ``weights`` and ``exactness`` blocks;
tests/test_cards.py checks that the committed files equal this output (`stale_files`).
"""

from __future__ import annotations

import re
from pathlib import Path

from .cards import fmt_g, fmt_millions, fmt_mult_adds, load_measurements, render_card, zoo_cards, zoo_facts
from .errors import ConfigError, NotFoundError
from .files import atomic_write
from .table import format_table
from .zoo import MODELS

CARDS_COMMAND = "nasnet-zoo cards"


def splice(text: str, name: str, block: str, command: str) -> str:
    """``text`` with the generated block ``name`` replaced by ``block`` (its start line naming ``command``)."""
    pattern = re.compile(rf"<!-- generated: {re.escape(name)} \([^)\n]*\) -->\n.*?<!-- end generated: {name} -->", re.S)
    if not pattern.search(text):
        raise ConfigError(
            f"no generated block '{name}': add the lines '<!-- generated: {name} ({command}) -->' and "
            f"'<!-- end generated: {name} -->' where it goes"
        )
    fresh = f"<!-- generated: {name} ({command}) -->\n{block.rstrip(chr(10))}\n<!-- end generated: {name} -->"
    return pattern.sub(lambda _: fresh, text, count=1)


def readme_blocks() -> dict[str, str]:
    """The README's generated tables: the models, the released weights, the exactness against the peers."""
    measured = load_measurements()
    models = []
    for name, tag in zoo_cards():
        m, s = MODELS[name], measured["size"][name]
        if tag not in (None, next(iter(m.pretrained), None)):
            continue  # one row per model
        p = m.paper
        cards = ", ".join(f"[{t}](model_cards/{name}.{t}.md)" for t in m.pretrained) or f"[card](model_cards/{name}.md)"
        models.append(
            (f"`{name}`", f"NASNet-A {p.row}", m.input_size, m.dataset,
             f"{fmt_millions(s['params_with_bn_stats'])} ({p.params_m:g}M)",
             f"{fmt_mult_adds(s['mult_adds'])} ({fmt_mult_adds(p.mult_adds_m * 1e6) if p.mult_adds_m else '-'})", cards)
        )  # fmt: skip
    weights = [
        (f"`{name}.{tag}`", f"`{w.source_name}`, {w.pin}", w.format,
         f"{w.top1} / {w.top5} ({w.reported_by.split(' (')[0]})")
        for name, m in MODELS.items()
        for tag, w in m.pretrained.items()
    ]  # fmt: skip
    peers = [
        (f"`{name}`", r["peer"], r["input_size"], fmt_g(r["logits_diff"]), fmt_g(r["logits_max"]),
         ("agree: " if r["agrees"] else "differ: ") + r["note"])
        for name, rows in measured["peers"].items()
        for r in rows
    ]  # fmt: skip
    return {
        "models": format_table(
            models, ["model", "paper row", "input", "dataset", "params (paper)", "mult-adds (paper)", "cards"]
        ),
        "weights": format_table(weights, ["tag (first = default)", "source", "format", "reported top-1 / top-5"]),
        "exactness": format_table(peers, ["model", "peer", "input", "max abs Δ logits", "max abs logit", ""]),
    }


def render_readme(text: str) -> str:
    """``text`` (README.md) with every generated block of the cards replaced by the generator's output."""
    for name, block in readme_blocks().items():
        text = splice(text, name, block, CARDS_COMMAND)
    return text


def render_all(root: Path) -> dict[Path, str]:
    """Every generated file of the checkout ``root``: ``model_cards/*.md`` and README.md."""
    out = {root / "model_cards" / f"{name}.{tag}.md" if tag else root / "model_cards" / f"{name}.md":
           render_card(zoo_facts(name, tag)) for name, tag in zoo_cards()}  # fmt: skip
    out[root / "README.md"] = render_readme((root / "README.md").read_text())
    return out


def source_root() -> Path:
    """The source checkout this package runs from (cards live beside it, not in an installed package)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file() or not (root / "README.md").is_file():
        raise NotFoundError(f"{root} is not a nasnet-zoo source checkout: run `nasnet-zoo cards` from one")
    return root


def stale_files(root: Path) -> list[Path]:
    """Generated files that differ from the generator's output, and cards it would not write."""
    expected = render_all(root)
    stale = [p for p, text in expected.items() if not p.is_file() or p.read_text() != text]
    extra = [p for p in sorted((root / "model_cards").glob("*.md")) if p not in expected]
    return stale + extra


def write_all(root: Path) -> list[Path]:
    """Write the generated files that changed and remove cards of rows that are gone; return what changed."""
    changed = []
    expected = render_all(root)
    (root / "model_cards").mkdir(exist_ok=True)
    for path, text in expected.items():
        if not path.is_file() or path.read_text() != text:
            atomic_write(path, text)
            changed.append(path)
    for path in sorted((root / "model_cards").glob("*.md")):
        if path not in expected:
            path.unlink()
            changed.append(path)
    return changed
