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


@pytest.mark.parametrize("error", [ValueError("a bug"), TypeError("another bug"), RuntimeError("torch's")])
def test_a_fault_in_the_code_keeps_its_traceback(monkeypatch, error: Exception) -> None:
    def fails(args: argparse.Namespace) -> None:
        raise error

    _with_run(monkeypatch, "list", fails)
    with pytest.raises(type(error), match=str(error)):  # not turned into a message that hides where it happened
        cli.main(["list"])


def _one_line(capsys: pytest.CaptureFixture, start: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith(start) and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_user_mistakes_reached_through_the_error_base_are_one_line(tmp_path, capsys) -> None:
    tiny = ["--no-pretrained", "--num-cells", "3", "--workers", "0", "--quiet", "--epochs", "1"]
    assert (
        cli.main(["finetune", "nasnet_imagenet", "digits", *tiny, "--filters", "2", "--out", str(tmp_path / "a")]) == 1
    )
    _one_line(capsys, "error: the ImageNet stem's first cell has filters / 4 = 0 filters (got 2 filters)")
    assert (
        cli.main(["finetune", "nasnet_imagenet", "digits", *tiny, "--filters", "6", "--out", str(tmp_path / "b")]) == 1
    )
    _one_line(capsys, "error: a factorized reduction needs an even number of output channels, got 3: choose filters")
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "config.json").write_text("{not json")
    (tmp_path / "images" / "a").mkdir(parents=True)
    assert cli.main(["validate", str(folder), str(tmp_path / "images"), "--workers", "0"]) == 1
    _one_line(capsys, f"error: {folder / 'config.json'} is not a timm config.json (Expecting property name")
    (tmp_path / "classes.json").write_bytes(b"\x00\xff binary")
    assert cli.main(["validate", "nasnet_cifar", str(tmp_path / "images"), "--no-pretrained", "--class-map",
                     str(tmp_path / "classes.json"), "--workers", "0"]) == 1  # fmt: skip
    _one_line(capsys, f"error: {tmp_path / 'classes.json'} is not a class map ('utf-8' codec can't decode")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["finetune", "nasnet_cifar", "digits", "--device", "gpu0"], "argument --device: 'gpu0' is not a device"),
        (["finetune", "nasnet_cifar", "digits", "--seed", "-5"], "argument --seed: must be at least 0, got -5"),
        (["finetune", "nasnet_cifar", "digits", "--split-seed", str(2**32)], "argument --split-seed: must be below"),
        (["search", "--out", "o", "--max-minutes", "0"], "argument --max-minutes: must be more than 0, got 0.0"),
        (["search", "--out", "o", "--gpus-per-child", "-1"], "argument --gpus-per-child: must be at least 0"),
    ],
)
def test_settings_a_library_would_refuse_with_its_own_error_are_usage_errors(argv, message, capsys) -> None:
    assert cli.main(argv) == 2  # before: numpy's, Ray's or torch's ValueError / RuntimeError
    assert message in capsys.readouterr().err


def test_a_cuda_device_on_a_machine_without_one_is_a_usage_error(monkeypatch, capsys) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cli.main(["finetune", "nasnet_cifar", "digits", "--device", "cuda:0"]) == 2
    assert "argument --device: cuda:0: this machine has no CUDA device torch can use" in capsys.readouterr().err
