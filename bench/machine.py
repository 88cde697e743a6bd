"""What every benchmark prints about where it ran: progress lines, CPU, revision, load."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_STARTED = time.perf_counter()


def progress(message: str) -> None:
    """Print a progress line on stderr, stamped with the seconds since the benchmark began."""
    print(f"[{time.perf_counter() - _STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def git_revision(*watched: str) -> str:
    """Return the short HEAD, noting when any of the watched folders has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = (
            watched
            and subprocess.run(
                ["git", "status", "--porcelain", "--", *watched],
                cwd=ROOT,
                capture_output=True,
                text=True,
            ).stdout.strip()
        )
    except OSError:
        return "unknown"
    if not head:
        return "unknown"
    return f"{head} ({'/ or '.join(watched)}/ modified)" if dirty else head


def load_average() -> str:
    """Return the one-minute load average, flagged when other work is running."""
    try:
        one_minute = os.getloadavg()[0]
    except OSError:
        return "unknown"
    busy = " (other work is running: figures may be low and noisy)" if one_minute > 0.5 else ""
    return f"{one_minute:.2f}{busy}"


@contextlib.contextmanager
def base_worktree(revision: str) -> Iterator[Path]:
    """Check revision out in a temporary git worktree (for A/B runs); remove it afterwards."""
    with tempfile.TemporaryDirectory(prefix="ipx-ab-") as parent:
        base = Path(parent) / "base"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(base), revision],
            cwd=ROOT, check=True, capture_output=True,
        )  # fmt: skip
        try:
            yield base
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, capture_output=True
            )
