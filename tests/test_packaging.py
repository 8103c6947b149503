"""What `pip install .` installs: a wheel built from pyproject.toml holds every package of
the source tree (a subpackage missing from it imports in the editable install the tests
use, and fails for every user who installs the wheel) and the data the digits need."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_holds_every_package_and_the_shipped_data(tmp_path):
    src = tmp_path / "src"  # a clean copy: no build/ folder left by an earlier build to hide a missing package
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for top in ("orchestrator", "trials", "cluster"):
        shutil.copytree(ROOT / top, src / top, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).is_file():
            shutil.copy(ROOT / name, src / name)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(src),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("prunetune-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {
        str(p.parent.relative_to(ROOT))
        for top in ("orchestrator", "trials", "cluster")
        for p in (ROOT / top).rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    assert {"trials/regularizers", "trials/models"} <= packages
    for pkg in packages:
        modules = {str(m.relative_to(ROOT)) for m in (ROOT / pkg).glob("*.py")}
        assert modules <= names, (pkg, sorted(modules - names))
    assert any(n.startswith("trials/assets/") and n.endswith(".npz") for n in names)
