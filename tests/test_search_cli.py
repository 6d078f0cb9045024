"""`nasnet-zoo search` and `nasnet-zoo retrain` (nasnet_zoo/cli.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nasnet_zoo.cli import main
from nasnet_zoo.genotype import Genotype


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_search_resume_and_retrain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["search", "--preset", "synthetic", "--algo", "evolution", "--budget", "30", "--seed", "2"]
    assert main([*args, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| evolution-seed2 | 30 " in out and "best.json" in out
    assert len(_lines(tmp_path / "evolution-seed2" / "journal.jsonl")) == 30

    assert main([*args, "--out", str(tmp_path)]) == 1  # a failure the message explains: exit 1
    assert "already holds a search; pass --resume" in capsys.readouterr().err

    args[args.index("30")] = "45"
    assert main([*args, "--out", str(tmp_path), "--resume"]) == 0
    assert [r["child"] for r in _lines(tmp_path / "evolution-seed2" / "journal.jsonl")] == list(range(45))
    capsys.readouterr()

    assert main(["retrain", str(tmp_path), "--top-k", "3"]) == 0
    out = capsys.readouterr().out
    assert "| rank | child" in out and "after 20 epochs" in out
    Genotype.load(tmp_path / "final.json")


def test_bad_arguments_say_what_is_wrong(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "--preset", "synthetic", "--budget", "0", "--out", str(tmp_path)]) == 2  # the usage
    assert "argument --budget: must be at least 1, got 0" in capsys.readouterr().err
    assert main(["search", "--preset", "nasnet", "--out", str(tmp_path)]) == 1
    assert "needs --data-dir" in capsys.readouterr().err
    assert main(["retrain", str(tmp_path / "nothing")]) == 1
    assert "no search runs under" in capsys.readouterr().err


def test_cpu_digits_with_real_children(tmp_path: Path) -> None:
    assert main(["search", "--preset", "cpu-digits", "--budget", "1", "--workers", "1", "--backend", "serial",
                 "--out", str(tmp_path)]) == 0  # fmt: skip
    [record] = _lines(tmp_path / "ppo-seed0" / "journal.jsonl")
    assert record["error"] is None and 0.3 < record["reward"] <= 1.0 and record["seconds"] > 0.1  # chance is 0.1
    Genotype.load(tmp_path / "best.json")
