"""The core's instruction count is a measurement that repeats: the same code, the same count."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_the_same_code_measures_the_same_instructions_per_command() -> None:
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind is not installed (Debian's valgrind package)")
    command = [sys.executable, "bench/core_instructions.py", "--base", "HEAD",
               "--warmup", "2000", "--measured", "2000"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    counts = [
        int(n.replace(",", ""))
        for n in re.findall(r"^[AB] ([\d,]+) instructions", done.stdout, re.MULTILINE)
    ]
    assert len(counts) == 2 and all(count > 10_000 for count in counts), done.stdout
    # HEAD against this checkout: equal but for uncommitted changes to the core, if any.
    changed = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "exchange", "matching",
                              "ledger", "bench"], cwd=ROOT).returncode  # fmt: skip
    if changed == 0:
        assert abs(counts[1] / counts[0] - 1) < 0.002, done.stdout
