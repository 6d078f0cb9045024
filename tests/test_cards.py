"""The committed model cards and README tables are the generator's output, and every card parses as a Hub model
card (huggingface_hub's ModelCard, offline) stating the zoo table's and the measurements' numbers."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from huggingface_hub import constants as hf_constants

from nasnet_zoo import cards, generated
from nasnet_zoo.cli import main
from nasnet_zoo.zoo import MODELS

ROOT = Path(__file__).resolve().parent.parent


def card_path(root: Path, name: str, tag: str | None) -> Path:
    return root / "model_cards" / (f"{name}.{tag}.md" if tag else f"{name}.md")


def test_committed_cards_and_readme_tables_are_the_generators_output():
    stale = generated.stale_files(ROOT)
    assert stale == [], f"stale generated files {stale}: run `nasnet-zoo cards` (or `make cards`)"


@pytest.mark.parametrize(("name", "tag"), cards.zoo_cards())
def test_cards_parse_as_hub_model_cards(name, tag, monkeypatch):
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    card = ModelCard(card_path(ROOT, name, tag).read_text())  # parses the YAML and the model-index; no network
    m, d = MODELS[name], card.data
    assert (d.library_name, d.pipeline_tag, d.license) == ("timm", "image-classification", "apache-2.0")
    assert d.datasets == [m.dataset] and "nasnet" in d.tags
    results = [(r.source_name, r.metric_name, r.metric_value) for r in d.eval_results]
    assert {r.dataset_type for r in d.eval_results} == {m.dataset}
    paper = {"Top-1 accuracy": m.paper.top1, "Top-5 accuracy": m.paper.top5, "Test error (%)": m.paper.error,
             "Test error with cutout (%)": m.paper.error_cutout}  # fmt: skip
    assert {k: v for src, k, v in results if src.startswith("Zoph")} == {k: v for k, v in paper.items() if v}
    if tag:
        w = m.pretrained[tag]
        reported = {k: v for src, k, v in results if src.startswith(w.reported_by)}
        assert reported == {"Top-1 accuracy": w.top1, "Top-5 accuracy": w.top5}
        assert w.source_url in card.text and w.pin in card.text  # the source and its md5 or pinned revision
        assert f'timm.create_model("hf-hub:{cards.HUB_ORG}/{name}.{tag}", pretrained=True)' in card.text
    size = cards.load_measurements()["size"][name]
    for key in ("params", "params_with_bn_stats", "mult_adds"):
        assert f"{size[key]:,}" in card.text
    for heading in ("The cells", "Weights", "Exactness", "Size", "Preprocessing", "Usage", "Limitations", "Citation"):
        assert f"\n## {heading}" in card.text
    assert "nasnet-zoo train cifar10" in card.text  # how to train the CIFAR weights nobody released


def test_cards_follow_the_zoo_table(monkeypatch):
    """Change a number in the table and the card, its model-index and the README's table change with it."""
    w = MODELS["nasnet_a_large"].pretrained["keras_in1k"]
    monkeypatch.setitem(MODELS["nasnet_a_large"].pretrained, "keras_in1k", dataclasses.replace(w, top1=12.34))
    card = ModelCard(cards.render_card(cards.zoo_facts("nasnet_a_large", "keras_in1k")))
    assert next(r.metric_value for r in card.data.eval_results if r.metric_name == "Top-1 accuracy") == 12.34
    assert "12.34 / 96.0" in generated.readme_blocks()["weights"]


def test_cards_command_writes_checks_and_prunes(tmp_path, capsys):
    for name in ("README.md", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "model_cards", tmp_path / "model_cards")
    assert main(["cards", "--check", "--root", str(tmp_path)]) == 0
    card = card_path(tmp_path, "nasnet_a_cifar", None)
    card.write_text(card.read_text().replace("CIFAR", "cifar"))
    (tmp_path / "model_cards" / "nasnet_b.md").write_text("a card for a model the zoo no longer has")
    capsys.readouterr()
    assert main(["cards", "--check", "--root", str(tmp_path)]) == 1
    assert capsys.readouterr().out.split() == ["stale:", str(card), "stale:", str(tmp_path / "model_cards/nasnet_b.md")]
    assert main(["cards", "--root", str(tmp_path)]) == 0
    assert card.read_text() == card_path(ROOT, "nasnet_a_cifar", None).read_text()
    assert not (tmp_path / "model_cards" / "nasnet_b.md").exists()
    assert main(["cards", "--check", "--root", str(tmp_path)]) == 0
