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


# --- timm's script flags ---------------------------------------------------------------------------------------
class _Ran:
    """Stands in for a run: records what a command passed on, returns a summary."""

    def __init__(self) -> None:
        self.kwargs: dict = {}

    def summary(self) -> dict:
        return {"best_val_acc": 0.5}


def test_finetune_and_train_take_timms_flags(monkeypatch, tmp_path, capsys) -> None:
    import json

    import nasnet_zoo.finetune
    import nasnet_zoo.train

    ran = _Ran()

    def finetune(name, data, out, **kwargs):
        ran.kwargs = kwargs
        return ran

    monkeypatch.setattr(nasnet_zoo.finetune, "finetune", finetune)
    results = tmp_path / "out" / "ft.json"
    argv = ["finetune", "nasnet_cifar", "digits", "--amp", "--channels-last", "--torchcompile", "--results-file"]
    argv += [str(results), "-b", "8", "--smoothing", "0.2", "--model-ema-decay", "0.99", "-j", "0"]
    assert cli.main(argv) == 0
    config = ran.kwargs["config"]
    assert (config.precision, config.channels_last, config.batch_size) == ("bf16", True, 8)
    assert (config.label_smoothing, config.ema_decay, ran.kwargs["num_workers"]) == (0.2, 0.99, 0)
    assert ran.kwargs["compile_backend"] == "inductor"
    assert json.loads(results.read_text()) == json.loads(capsys.readouterr().out) == ran.summary()
    assert cli.main(argv[:3]) == 0  # without them: the defaults
    assert (ran.kwargs["config"].precision, ran.kwargs["config"].channels_last) == ("auto", False)
    assert ran.kwargs["compile_backend"] is None

    class Fit:
        history, steps, seconds, final_val_acc, best_val_acc, best_epoch = [{}], 3, 1.0, 0.1, 0.2, 1

    def run_recipe(name, data_dir, **kwargs):
        ran.kwargs = kwargs
        return Fit()

    monkeypatch.setattr(nasnet_zoo.train, "run_recipe", run_recipe)
    argv = ["train", "cifar10", "--data-dir", "d", "--amp", "--torchcompile", "eager", "--results-file", str(results)]
    assert cli.main(argv) == 0
    assert ran.kwargs["config_changes"] == {"precision": "bf16"} and ran.kwargs["compile_backend"] == "eager"
    assert json.loads(results.read_text())["steps"] == 3


def test_run_recipe_applies_the_config_changes(monkeypatch, tmp_path) -> None:
    import torch

    import nasnet_zoo.train.recipes as recipes
    from nasnet_zoo.data import digits

    seen = {}

    def fit(net, train, val, config, out, **kwargs):
        seen.update(config=config, compiled=getattr(net, "compiled_with", None))
        return "fitted"

    train, val = digits(size=32, channels=3)
    monkeypatch.setattr(recipes, "fit", fit)
    monkeypatch.setattr(recipes, "_recipe_data", lambda recipe, data_dir, cfg, download: (train, val, 10))
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, backend: setattr(self, "compiled_with", backend))
    got = recipes.run_recipe(
        "cifar10", tmp_path, config_changes=dict(precision="bf16", channels_last=True), compile_backend="eager",
        num_cells=3, filters=8,
    )  # fmt: skip
    assert got == "fitted" and seen["compiled"] == "eager"
    assert (seen["config"].precision, seen["config"].channels_last) == ("bf16", True)
    assert seen["config"].lr == recipes.RECIPES["cifar10"].config.lr  # the rest is the recipe's


def test_validate_and_predict_take_timms_flags(monkeypatch, tmp_path, capsys) -> None:
    import json

    import torch

    from nasnet_zoo import create_model
    from nasnet_zoo.finetune import save_finetuned
    from tests.helpers import write_image_folder

    torch.manual_seed(0)
    classes = tuple("abcdefghij")
    write_image_folder(tmp_path / "val", classes, per_class=1)
    save_finetuned(create_model("nasnet_cifar", num_cells=3, filters=8), tmp_path / "model", classes=list(classes))
    compiled = []

    def compile_(self, backend=None, **kwargs):  # record instead of compiling (minutes on a CPU)
        compiled.append((backend, self.stem.conv.weight.is_contiguous(memory_format=torch.channels_last)))

    monkeypatch.setattr(torch.nn.Module, "compile", compile_)
    results = tmp_path / "val.json"
    argv = ["validate", str(tmp_path / "model"), str(tmp_path / "val"), "-j", "0", "-b", "4"]
    assert cli.main([*argv, "--amp", "--channels-last", "--torchcompile", "eager", "--results-file", str(results)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert json.loads(results.read_text()) == printed
    assert printed["precision"] == "bf16" and printed["images"] == 10 and compiled == [("eager", True)]
    assert cli.main(argv) == 0
    assert json.loads(capsys.readouterr().out)["precision"] == "auto" and len(compiled) == 1

    image = tmp_path / "val" / "a" / "0.png"
    argv = ["predict", f"local-dir:{tmp_path / 'model'}", str(image), "--json", "--top", "3"]
    assert cli.main(argv) == 0
    plain = json.loads(capsys.readouterr().out)
    assert cli.main([*argv, "--amp", "--channels-last", "--torchcompile", "--results-file", str(results)]) == 0
    amp = json.loads(capsys.readouterr().out)
    assert json.loads(results.read_text()) == amp and compiled[-1] == ("inductor", True)
    assert [t["index"] for t in amp[0]["top"]] == [t["index"] for t in plain[0]["top"]]
    assert amp[0]["top"][0]["probability"] != plain[0]["top"][0]["probability"]  # bf16 arithmetic, not fp32


def test_bench_takes_timms_flags(tmp_path) -> None:
    from benchmarks.run import build_parser
    from benchmarks.run import main as bench

    args = build_parser().parse_args(["--amp", "--channels-last", "--torchcompile", "--results-file", "r.json"])
    assert args.amp and args.channels_last and args.torchcompile == "inductor" and str(args.results_file) == "r.json"
    with pytest.raises(SystemExit, match="only inductor is measured"):
        bench(["--torchcompile", "eager"])
    with pytest.raises(SystemExit, match="exclude each other"):
        bench(["--torchcompile", "--skip", "compile"])
