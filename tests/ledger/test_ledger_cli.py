"""`ipx ledger verify DIR`, run as a user runs it, on real journals written by FileJournal.

Exit codes: 0 everything holds; 1 the journal does not verify (the output names the seq);
2 there is no journal there.

The hand-written journals here hold placeholder commands (the kind's name, not an encoded
command), so their structural checks run with --no-replay. Replay, the default, is tested on
journals the exchange itself wrote, then rewritten as a forger with write access would: the
postings or kinds changed and every hash after them recomputed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest

from ledger.file_store import FileJournal
from ledger.frames import encode_frame
from ledger.records import Record, RecordBody
from tests.exchange.rulebook import ISSUER, USD, Market
from tests.ledger.test_verify import DAY, Step, issue, withdraw

ROOT = Path(__file__).resolve().parents[2]
FRAME_HEADER_BYTES = 8
NO_REPLAY = "--no-replay"  # For the hand-written journals: their commands are placeholders.


def write_journal(directory: Path, steps: Sequence[Step], batch_size: int = 3) -> list[Record]:
    bodies = [
        RecordBody(seq, 1_000 * seq, kind, kind.encode(), tuple(postings))
        for seq, (kind, postings) in enumerate(steps, start=1)
    ]
    records: list[Record] = []
    with FileJournal.open(directory) as journal:
        for start in range(0, len(bodies), batch_size):  # Several group commits.
            records += journal.append_bodies(bodies[start : start + batch_size])
    return records


def segment(directory: Path) -> Path:
    (only,) = sorted((directory / "journal").glob("*.seg"))
    return only


def frame_offset(records: Sequence[Record], seq: int) -> int:
    return sum(len(encode_frame(record)) for record in records[: seq - 1])


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def ipx(*arguments: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "ledger", *arguments],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def good_journal(tmp_path: Path) -> tuple[Path, list[Record]]:
    directory = tmp_path / "exchange"
    return directory, write_journal(directory, DAY)


def test_a_good_journal_verifies_with_exit_0_and_a_summary(
    good_journal: tuple[Path, list[Record]],
) -> None:
    directory, records = good_journal
    result = ipx("verify", str(directory), NO_REPLAY)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"journal {directory}: OK"
    assert "  records     9" in lines
    assert "  last seq    9" in lines
    assert f"  head hash   {records[-1].hash.hex()}" in lines
    assert any(line.split() == ["USD", "8560", "-", "8560"] for line in lines)
    assert any(line.split() == ["RS-1", "1000", "1000", "-"] for line in lines)


def test_the_json_summary_carries_the_same_figures(
    good_journal: tuple[Path, list[Record]],
) -> None:
    directory, records = good_journal
    result = ipx("verify", str(directory), "--json", NO_REPLAY)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["ok"] is True
    assert (summary["records"], summary["last_seq"]) == (9, 9)
    assert summary["head_hash"] == records[-1].hash.hex()
    assert summary["assets"]["RS-1"] == {"total": 1000, "issued_units": 1000, "net_deposits": None}
    assert summary["assets"]["EUR"] == {"total": 300, "issued_units": None, "net_deposits": 300}
    assert summary["failure"] is None and summary["torn_tail"] is None


def test_one_flipped_byte_in_a_record_fails_naming_its_seq(
    good_journal: tuple[Path, list[Record]],
) -> None:
    directory, records = good_journal
    start = frame_offset(records, 4)
    flip_byte(segment(directory), start + FRAME_HEADER_BYTES + 20)
    result = ipx("verify", str(directory), NO_REPLAY)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"journal {directory}: FAILED" in result.stdout
    assert f"first failure at seq 4 ({segment(directory)} offset {start})" in result.stdout
    assert "  records     3" in result.stdout  # What verified before the damage.
    as_json = json.loads(ipx("verify", str(directory), "--json", NO_REPLAY).stdout)
    assert as_json["ok"] is False
    assert as_json["failure"]["seq"] == 4
    assert as_json["failure"]["kind"] == "journal_corrupt"
    assert as_json["assets"] is None


def test_a_torn_tail_is_a_failure_unless_allowed(good_journal: tuple[Path, list[Record]]) -> None:
    directory, records = good_journal
    path = segment(directory)
    path.write_bytes(path.read_bytes()[:-5])  # The last append was cut short by a crash.
    torn = ipx("verify", str(directory), NO_REPLAY)
    assert torn.returncode == 1, torn.stdout + torn.stderr
    assert "first failure at seq 9" in torn.stdout
    assert "torn tail" in torn.stdout
    assert "--allow-torn-tail accepts that" in torn.stdout
    allowed = ipx("verify", str(directory), "--allow-torn-tail", "--json", NO_REPLAY)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    summary = json.loads(allowed.stdout)
    assert (summary["records"], summary["last_seq"]) == (8, 8)
    assert summary["head_hash"] == records[7].hash.hex()
    assert summary["torn_tail"]["seq"] == 9
    assert summary["torn_tail"]["offset"] == frame_offset(records, 9)
    assert json.loads(ipx("verify", str(directory), "--json", NO_REPLAY).stdout)["failure"][
        "kind"
    ] == ("torn_tail")


def test_a_well_formed_journal_that_breaks_a_ledger_rule_fails_naming_the_seq(
    tmp_path: Path,
) -> None:
    # Frames, CRCs and the chain are all fine: only rebuilding the balances finds the problem.
    steps: list[Step] = [*DAY[:5], ("withdraw", [withdraw("carol", 1_441)])]
    write_journal(tmp_path, steps)
    result = ipx("verify", str(tmp_path), NO_REPLAY)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "first failure at seq 6: invalid postings: carol has 1440 USD available" in result.stdout
    assert "  records     5" in result.stdout


def test_units_created_outside_issuance_fail_the_cli_too(tmp_path: Path) -> None:
    minted = issue("bob", 1)
    write_journal(tmp_path, [*DAY[:2], ("place_order", [minted])])
    result = ipx("verify", str(tmp_path), "--json", NO_REPLAY)
    assert result.returncode == 1
    failure = json.loads(result.stdout)["failure"]
    assert (failure["kind"], failure["seq"]) == ("verification_failed", 3)


def test_a_directory_without_a_journal_is_unusable_input(tmp_path: Path) -> None:
    result = ipx("verify", str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert "no journal" in result.stderr
    assert result.stdout == ""


def test_an_empty_journal_verifies_with_no_records(tmp_path: Path) -> None:
    FileJournal.open(tmp_path).close()
    result = ipx("verify", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["records"], summary["last_seq"], summary["assets"]) == (0, 0, {})


# Replay: the journal the exchange wrote, and forgeries of it that keep a valid chain.

NEWCOMER = "erin"  # Deposits once and never trades: the deposit the forger moves.
NEWCOMER_CASH = 5_000_000


def exchange_day() -> Market:
    """A real session: accounts, listing, issuance, a trade, a resting bid, a late deposit."""
    market = Market().trading()
    market.sell(ISSUER, 100, 1_000)
    market.buy("alice", 40, 1_000)  # Trades 40 at 1,000.
    market.open_account(NEWCOMER, cash=NEWCOMER_CASH)
    market.buy("bob", 10, 990)  # Rests.
    return market


def write_bodies(directory: Path, bodies: Sequence[RecordBody]) -> list[Record]:
    # FileJournal seals the bodies: the chain and CRCs of a forged journal are all valid.
    with FileJournal.open(directory) as journal:
        return journal.append_bodies(bodies)


def deposit_index(bodies: Sequence[RecordBody], account: str) -> int:
    return next(
        index
        for index, body in enumerate(bodies)
        if body.kind == "deposit" and body.postings[0].credit_account == account
    )


@pytest.fixture
def exchange_journal(tmp_path: Path) -> tuple[Path, Market]:
    market = exchange_day()
    write_bodies(tmp_path, market.records)
    return tmp_path, market


def test_a_journal_the_exchange_wrote_replays_by_default(
    exchange_journal: tuple[Path, Market],
) -> None:
    directory, market = exchange_journal
    result = ipx("verify", str(directory))
    assert result.returncode == 0, result.stdout + result.stderr
    state_hash = market.exchange.state_hash().hex()
    assert f"  replayed    every command: exchange state hash {state_hash}" in result.stdout
    explicit = ipx("verify", str(directory), "--replay", "--json")
    assert explicit.returncode == 0, explicit.stdout + explicit.stderr
    summary = json.loads(explicit.stdout)
    assert summary["ok"] is True and summary["replayed"] is True
    assert (summary["records"], summary["last_seq"]) == (len(market.records),) * 2
    assert summary["exchange_state_hash"] == state_hash
    structural = json.loads(ipx("verify", str(directory), "--json", NO_REPLAY).stdout)
    assert structural["ok"] is True
    assert (structural["replayed"], structural["exchange_state_hash"]) == (False, None)


def test_a_deposit_posted_to_another_account_passes_the_ledger_checks_but_not_replay(
    tmp_path: Path,
) -> None:
    # The forger credits erin's deposit to alice and recomputes every hash after it: balances,
    # world flows and conservation all still hold; only the command still says erin.
    bodies = list(exchange_day().records)
    index = deposit_index(bodies, NEWCOMER)
    seq = bodies[index].seq
    (posting,) = bodies[index].postings
    moved = msgspec.structs.replace(posting, credit_account="alice")
    bodies[index] = msgspec.structs.replace(bodies[index], postings=(moved,))
    records = write_bodies(tmp_path, bodies)

    structural = ipx("verify", str(tmp_path), NO_REPLAY)
    assert structural.returncode == 0, structural.stdout + structural.stderr
    assert "postings not checked against the commands" in structural.stdout

    replayed = ipx("verify", str(tmp_path), "--replay")
    assert replayed.returncode == 1, replayed.stdout + replayed.stderr
    assert f"journal {tmp_path}: FAILED" in replayed.stdout
    assert (
        f"  first failure at seq {seq}: does not replay: posting 1 is {NEWCOMER_CASH} {USD} "
        f"from @bank available to alice available, its command makes {NEWCOMER_CASH} {USD} "
        f"from @bank available to {NEWCOMER} available"
    ) in replayed.stdout
    assert f"  records     {seq - 1}" in replayed.stdout  # What passed every check.
    as_json = json.loads(ipx("verify", str(tmp_path), "--json").stdout)  # Replay by default.
    assert as_json["ok"] is False
    assert (as_json["failure"]["kind"], as_json["failure"]["seq"]) == ("replay_mismatch", seq)
    assert as_json["head_hash"] == records[seq - 2].hash.hex()
    assert as_json["assets"] is None and as_json["exchange_state_hash"] is None


def test_a_record_relabelled_to_another_kind_fails_replay_naming_its_seq(tmp_path: Path) -> None:
    # The world-flow rule lets value cross the boundary by kind; replay checks the kind is the
    # command's. Relabelling a record without postings breaks no ledger rule.
    bodies = list(exchange_day().records)
    index = next(i for i, body in enumerate(bodies) if body.kind == "open_account")
    bodies[index] = msgspec.structs.replace(bodies[index], kind="deposit")
    write_bodies(tmp_path, bodies)
    assert ipx("verify", str(tmp_path), NO_REPLAY).returncode == 0
    result = ipx("verify", str(tmp_path), "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    failure = json.loads(result.stdout)["failure"]
    assert (failure["kind"], failure["seq"]) == ("replay_mismatch", index + 1)
    assert "its kind is deposit but its command is OpenAccount" in failure["reason"]


def test_a_journal_of_placeholder_commands_fails_replay_at_its_first_record(
    good_journal: tuple[Path, list[Record]],
) -> None:
    directory, _ = good_journal
    result = ipx("verify", str(directory), "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert (summary["failure"]["kind"], summary["failure"]["seq"]) == ("replay_mismatch", 1)
    assert "command bytes do not decode" in summary["failure"]["reason"]
    assert summary["records"] == 0


def test_a_reader_that_stops_early_ends_the_output_without_a_traceback(
    good_journal: tuple[Path, list[Record]],
) -> None:
    directory, _ = good_journal
    # `ipx ledger verify DIR --json | head -1`: the pipe closes after the first line.
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    verify = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "ledger", "verify", str(directory), "--json",
         NO_REPLAY],
        cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert verify.stdout is not None and verify.stderr is not None
    verify.stdout.close()  # The reader goes away before anything is written.
    errors = verify.stderr.read().decode()
    assert verify.wait(timeout=60) == 1
    assert "Traceback" not in errors, errors
