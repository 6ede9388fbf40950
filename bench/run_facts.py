"""What a benchmark report says about the run: when, on what, at which commit."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def machine_facts(python_detail: str = "", extra: Sequence[str] = ()) -> list[str]:
    """Date, CPUs and load, Python (with *python_detail*), then *extra*, then the commit."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    return [
        f"date: {datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"nproc: {os.cpu_count()}; load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"python: {platform.python_version()}{python_detail} ({platform.platform()})",
        *extra,
        f"commit: {commit} (working tree may differ)",
    ]
