"""The crash soak runs rounds of start, kill and check, and says what it checked.

A run killed before it served is no failure of the restart checks: the next run must end the
sessions it could not.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from bench.crash_soak import Soak, check_restart
from tests.exchange.rulebook import START_TS_NS
from tests.gateway.conftest import stopped_in_an_auction

ROOT = Path(__file__).resolve().parents[2]


def test_rounds_of_kills_and_restarts_are_checked_and_reported(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    command = [sys.executable, "bench/crash_soak.py", "--duration", "6", "--life-max", "3",
               "--seed", "5", "--data-dir", str(data_dir)]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = re.search(r"^(\d+) rounds \((\d+) SIGKILL, (\d+) SIGTERM\), ([\d,]+) records",
                        done.stdout, re.MULTILINE)  # fmt: skip
    assert summary is not None, done.stdout
    rounds, kills, terms, records = (int(group.replace(",", "")) for group in summary.groups())
    assert rounds >= 2 and kills + terms == rounds and records > 0
    assert "every check passed" in done.stdout
    assert done.stderr.count("checks passed") == rounds


def test_a_session_the_restart_did_not_end_is_a_failure(tmp_path: Path) -> None:
    stopped_in_an_auction(tmp_path, START_TS_NS)
    soak = Soak()
    assert check_restart(str(tmp_path), soak) is None
    assert list(soak.pending) == ["s-alice"] and len(soak.pending["s-alice"]) == 1
    # No start in between: the session is still there.
    assert check_restart(str(tmp_path), soak) == "session s-alice was not ended by the restart"


def test_a_run_killed_while_starting_leaves_the_sessions_to_the_next_restart(
    tmp_path: Path,
) -> None:
    # Killed before it served (still recovering, on a loaded machine), a run may not have
    # ended the last run's sessions; that is no failure, and the next restart is checked.
    stopped_in_an_auction(tmp_path, START_TS_NS)
    soak = Soak()
    assert check_restart(str(tmp_path), soak) is None
    assert check_restart(str(tmp_path), soak, served=False) is None
    assert list(soak.pending) == ["s-alice"]
    assert check_restart(str(tmp_path), soak) == "session s-alice was not ended by the restart"
