"""The ``nasnet-zoo`` command's one error rule (nasnet_zoo/cli): messages, exit statuses, --debug, Ctrl-C."""

from __future__ import annotations

import argparse

import pytest

from nasnet_zoo import cli
from nasnet_zoo.errors import GenotypeError


def _with_run(monkeypatch: pytest.MonkeyPatch, name: str, run) -> None:
    commands = [c if c.name != name else cli.Command(c.name, c.help, run, c.arguments, c.parents) for c in cli.COMMANDS]
    monkeypatch.setattr(cli, "COMMANDS", commands)


def test_a_project_error_is_one_line_and_exit_1(monkeypatch, capsys) -> None:
    def fails(args: argparse.Namespace) -> None:
        raise GenotypeError("normal cell block 2: input 9 out of range")

    _with_run(monkeypatch, "list", fails)
    assert cli.main(["list"]) == 1
    assert capsys.readouterr().err == "error: normal cell block 2: input 9 out of range\n"
    assert cli.main(["list", "--debug"]) == 1  # after the command, too
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.endswith(
        "error: normal cell block 2: input 9 out of range\n"
    )


def test_ctrl_c_is_one_line_and_says_how_to_resume(monkeypatch, capsys) -> None:
    def interrupted(args: argparse.Namespace) -> None:
        raise KeyboardInterrupt

    _with_run(monkeypatch, "search", interrupted)
    assert cli.main(["search", "--preset", "synthetic", "--out", "runs/x"]) == 130
    assert capsys.readouterr().err == "interrupted (run the same command with --resume to continue)\n"


def test_a_wrong_command_line_is_exit_2_and_help_is_for_users(capsys) -> None:
    assert cli.main(["train", "cifar10", "--data-dir", "d", "--filters", "-8"]) == 2
    assert "argument --filters: must be at least 1, got -8" in capsys.readouterr().err
    assert cli.main(["finetune", "nasnet_a_mobile", "digits", "--no-such-flag"]) == 2
    assert cli.main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert (
        "`nasnet-zoo COMMAND --help` explains each command" in out and "The ``nasnet-zoo`` command" not in out
    )  # not the docstring
    for c in cli.COMMANDS:
        if c.name != "bench":  # passes --help to the benchmark script
            assert cli.main([c.name, "--help"]) == 0
            text = " ".join(capsys.readouterr().out.split())
            assert " ".join(c.help.split()[:4]) in text  # its description is its help line (argparse wraps it)


def test_an_error_from_a_data_loader_worker_is_its_own_message(monkeypatch, capsys) -> None:
    def fails(args: argparse.Namespace) -> None:
        from torch.utils.data import DataLoader, Dataset

        from nasnet_zoo.errors import DataError

        class Corrupt(Dataset):
            def __len__(self) -> int:
                return 1

            def __getitem__(self, i: int) -> None:
                raise DataError("cat/1.jpg is not a readable image: replace or remove it")

        next(iter(DataLoader(Corrupt(), num_workers=1)))

    _with_run(monkeypatch, "list", fails)
    assert cli.main(["list"]) == 1
    assert capsys.readouterr().err == "error: cat/1.jpg is not a readable image: replace or remove it\n"
