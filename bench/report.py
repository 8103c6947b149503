"""Shared by the benchmarks: name the machine, write a section of a docs page in place."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return f"{cpu}, {os.cpu_count()} cores{gpu}, torch {torch.__version__}"


def write_section(doc: Path, key: str, text: str) -> None:
    """Replace the text between ``<!-- KEY:start -->`` and ``<!-- KEY:end -->`` in ``doc``
    (appended with its markers when absent)."""
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    body = doc.read_text() if doc.exists() else ""
    if start in body and end in body:
        a, b = body.index(start) + len(start), body.index(end)
        body = body[:a] + "\n" + text + "\n" + body[b:]
    else:
        body = body.rstrip() + f"\n\n{start}\n{text}\n{end}\n"
    doc.write_text(body)
