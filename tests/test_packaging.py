"""`nasnet_zoo.search` (the folder search/) imports from anywhere: the repository root with an editable install,
another directory, and a regular (wheel) install even when the checkout's nasnet_zoo/ shadows it."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBE = "import nasnet_zoo, nasnet_zoo.search.space as s; print(nasnet_zoo.__file__); print(s.__file__)"


def where(cwd: Path, installed: Path | None = None) -> list[Path]:
    """Import from ``cwd``; with ``installed``, from that install instead of this environment's editable one
    (``-S`` skips the .pth files that set up the editable mapping; site-packages itself stays on the path)."""
    env, flags = dict(os.environ), []
    if installed is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(installed), sysconfig.get_paths()["purelib"]])
        flags = ["-S"]
    out = subprocess.run([sys.executable, *flags, "-c", PROBE], cwd=cwd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return [Path(line) for line in out.stdout.split()]


def test_from_the_repository_root():
    package, search = where(ROOT)
    assert package == ROOT / "nasnet_zoo" / "__init__.py" and search == ROOT / "search" / "space.py"


def test_from_another_directory(tmp_path):
    _, search = where(tmp_path)
    assert search.name == "space.py" and search.parent.name == "search"


def test_wheel_install_maps_search_and_checkout_shadowing_still_works(tmp_path):
    target = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--quiet", "--target",
         str(target), str(ROOT)],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    assert (target / "nasnet_zoo" / "search" / "space.py").is_file()  # pyproject's mapping
    assert (target / "nasnet_zoo" / "measurements.json").is_file()  # package data: what `publish` puts in cards
    assert (target / "nasnet_zoo" / "templates" / "model_card.md").is_file()  # ... and the card's template
    package, search = where(tmp_path, target)  # the installed copy
    assert package.is_relative_to(target) and search.is_relative_to(target)
    package, search = where(ROOT, target)  # the checkout's nasnet_zoo/ shadows the installed one
    assert package == ROOT / "nasnet_zoo" / "__init__.py" and search == ROOT / "search" / "space.py"
