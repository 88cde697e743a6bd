"""Rule: a new exchange starts with one operator account, whose token is printed once."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from websockets.sync.client import connect

from gateway import event_loop
from gateway.serve_cli import is_new_data_dir
from gateway.server import run_server
from ledger.file_store import FileJournal
from tests.exchange import rulebook
from tests.gateway.conftest import start_ipx_serve, stop_ipx_serve
from tests.ledger.journal_writer import body_for

START_TIMEOUT_S = 20
ROOT = Path(__file__).resolve().parents[2]


def _logon(url: str, token: str) -> dict[str, object]:
    with connect(url, open_timeout=START_TIMEOUT_S) as websocket:
        request = {"id": "1", "method": "session.logon", "params": {"token": token}}
        websocket.send(json.dumps(request))
        answer: dict[str, object] = json.loads(websocket.recv(timeout=START_TIMEOUT_S))
        return answer


def test_a_new_data_dir_gets_an_operator_whose_token_logs_on_and_is_shown_once(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "exchange"
    process, lines, url = start_ipx_serve(data_dir)
    try:
        announce = next(index for index, line in enumerate(lines) if "operator account" in line)
        token = lines[announce + 1].strip()
        answer = _logon(url, token)
        assert answer["status"] == 200, answer
        assert token not in (data_dir / "tokens.json").read_text()  # Stored only as a hash.
        assert f"event loop {event_loop.default_event_loop()})" in lines[-1]  # The address line.
    finally:
        stop_ipx_serve(process)
    process, lines, url = start_ipx_serve(data_dir)
    try:
        assert not any("operator account" in line for line in lines), lines
        assert _logon(url, token)["status"] == 200
    finally:
        stop_ipx_serve(process)


@pytest.mark.parametrize("loop_name", event_loop.EVENT_LOOPS)
def test_ipx_serve_runs_on_the_event_loop_asked_for(tmp_path: Path, loop_name: str) -> None:
    if loop_name == event_loop.UVLOOP and not event_loop.uvloop_available():
        pytest.skip("uvloop is not installed")
    data_dir = tmp_path / "exchange"
    process, lines, url = start_ipx_serve(data_dir, "--event-loop", loop_name)
    try:
        assert f"event loop {loop_name})" in lines[-1]  # Named from the running loop's type.
        token = lines[next(i for i, line in enumerate(lines) if "operator account" in line) + 1]
        assert _logon(url, token.strip())["status"] == 200
    finally:
        stop_ipx_serve(process)


def test_a_data_dir_whose_journal_holds_no_frame_is_new(tmp_path: Path) -> None:
    assert is_new_data_dir(str(tmp_path))
    with FileJournal.open(tmp_path):
        pass
    assert is_new_data_dir(str(tmp_path))  # An empty first segment.
    (segment,) = (tmp_path / "journal").glob("*.seg")
    segment.write_bytes(bytes(4096))  # Space written ahead, no frame landed (a crash).
    assert is_new_data_dir(str(tmp_path))
    segment.write_bytes(b"")
    with FileJournal.open(tmp_path) as journal:
        journal.append_bodies([body_for(1)])
    assert not is_new_data_dir(str(tmp_path))


def test_a_taken_port_exits_2_with_one_line_and_leaves_the_journal_free(tmp_path: Path) -> None:
    data_dir = tmp_path / "exchange"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "serve", "--data-dir", str(data_dir),
             "--port", str(port), "--log-format", "text"],
            cwd=ROOT, capture_output=True, text=True, timeout=START_TIMEOUT_S, check=False,
        )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "ipx serve:" in result.stderr
    with FileJournal.open(data_dir):  # Released: the next start can open it.
        pass


@pytest.mark.asyncio
async def test_run_server_on_a_taken_port_releases_the_journal_for_a_retry(
    tmp_path: Path,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            async with run_server(str(tmp_path), "127.0.0.1", taken.getsockname()[1]):
                pass
    async with run_server(str(tmp_path), "127.0.0.1", 0) as running:
        assert running.gateway.sequencer.running


def test_a_journal_that_does_not_replay_under_these_rules_exits_2_and_says_why(
    tmp_path: Path,
) -> None:
    # A record whose postings this version's rules do not give (an older version's rules, or
    # an altered journal): recovery refuses, with one line, not a traceback.
    market = rulebook.Market()
    market.accounts()
    bodies = list(market.records)
    deposit = next(i for i, body in enumerate(bodies) if body.kind == "deposit")
    bodies[deposit] = msgspec.structs.replace(bodies[deposit], postings=())
    with FileJournal.open(tmp_path) as journal:
        journal.append_bodies(bodies)
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--data-dir", str(tmp_path),
         "--port", "0", "--log-format", "text"],
        cwd=ROOT, capture_output=True, text=True, timeout=START_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert f"record {deposit + 1} does not replay" in result.stderr
    assert "other rules than this version's" in result.stderr
