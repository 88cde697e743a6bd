"""The fsync-overlap benchmark runs all three designs and reports sane figures (never speed)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_each_design_makes_batches_durable_and_is_reported(tmp_path: Path) -> None:
    command = [
        sys.executable, "bench/fsync_overlap_bench.py", "--seconds", "0.3", "--rounds", "1",
        "--batch-cpu-us", "200", "--dir", str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("command: python bench/fsync_overlap_bench.py --seconds 0.3")
    rows = re.findall(r"^\| (\w+) \| ([\d,]+) \| ([\d.]+) \| ([\d.]+) / ([\d.]+) \|$",
                      done.stdout, re.MULTILINE)  # fmt: skip
    assert [row[0] for row in rows] == ["inline", "thread", "process"]
    for _, rate, ratio, p50, p99 in rows:
        assert int(rate.replace(",", "")) > 0 and float(ratio) > 0
        assert 0 < float(p50) <= float(p99)
    assert list(tmp_path.iterdir()) == []  # Its temporary files are gone.
