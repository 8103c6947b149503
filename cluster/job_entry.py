"""Entry point of a submitted job: ``python -m cluster.job_entry <prunetune args>``.

Ray runs a job inside a copy of its runtime-env working_dir that can be cleaned up
before the job's driver exits; Tune then fails on ``os.getcwd()``. This entry point
imports everything it needs first, copies the job's config aside, and runs prunetune
from a directory of its own.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import orchestrator.export  # noqa: F401 - imported while the working_dir exists
import orchestrator.promote  # noqa: F401
import orchestrator.search  # noqa: F401
from orchestrator.cli import main

if __name__ == "__main__":
    home = Path(tempfile.mkdtemp(prefix="prunetune-job-run-"))
    args = list(sys.argv[1:])
    for i, arg in enumerate(args):
        if arg.endswith((".yaml", ".yml")) and Path(arg).is_file():
            args[i] = str(shutil.copy(arg, home / Path(arg).name))
    os.chdir(home)
    sys.exit(main(args))
