"""Entry point of a submitted job: ``python -m orchestrator.job_entry <prunetune args>``.

Ray runs a job inside a copy of its runtime-env working_dir, which Ray may remove while
the job's driver still runs (once the driver has joined the cluster, nothing holds the
package): Tune then fails on ``os.getcwd()``, and data files shipped with the package
(the digits) vanish. So this entry point first copies the packages, the job's config and
its assets into a folder of its own, imports prunetune from there, and runs from there.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

PACKAGES = ("orchestrator", "trials", "cluster")


def _own_copy(src: Path, home: Path) -> None:
    for pkg in PACKAGES:
        shutil.copytree(src / pkg, home / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    sys.path.insert(0, str(home))
    for name in list(sys.modules):  # the job's copy of `cluster` is already imported: forget it
        if name.split(".")[0] in PACKAGES and name != "__main__":
            del sys.modules[name]


if __name__ == "__main__":
    home = Path(tempfile.mkdtemp(prefix="prunetune-job-run-"))
    _own_copy(Path(__file__).resolve().parents[1], home)
    args = list(sys.argv[1:])
    for i, arg in enumerate(args):
        if arg.endswith((".yaml", ".yml")) and Path(arg).is_file():
            args[i] = str(shutil.copy(arg, home / Path(arg).name))
    os.chdir(home)
    from orchestrator.cli import main

    sys.exit(main(args))
