"""``mcep demo --exit`` end to end: a fresh directory, the embedded SQLite default, the sandbox,
the worker; the campaign drains and the summary and URL are printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_runs_to_its_summary(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCEP_")}
    command = [
        sys.executable,
        "-m",
        "mcep.cli.main",
        "demo",
        "--exit",
        "--prospects",
        "120",
        "--port",
        "0",
    ]
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    queued = int(re.search(r"(\d+) queued", out).group(1))  # type: ignore[union-attr]
    assert queued > 100
    assert (
        "Campaign summary by variant" in out
        and re.search(r"│ A\s+│", out)
        and re.search(r"│ B\s+│", out)
    )
    assert re.search(r"MCEP is running at http://127\.0\.0\.1:\d+", out)
    assert (tmp_path / "mcep.db").exists()
    # A second run on the same database reuses the firm and launches again; whoever said STOP
    # in the first run is skipped now.
    again = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240
    )
    assert again.returncode == 0, again.stderr[-2000:]
    requeued = int(re.search(r"(\d+) queued", again.stdout).group(1))  # type: ignore[union-attr]
    assert 0 < requeued <= queued
