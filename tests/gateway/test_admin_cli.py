"""`ipx accounts` and `ipx tokens`: the host administrator's commands.

Rules:
- `accounts create` journals an account (ending the last run's sessions first), and refuses
  while a server holds the journal.
- Tokens are shown once, stored as hashes, issued only for an account the journal opened,
  never start like an option, and concurrent issues and revokes lose nothing.
- Exit codes: 0 done; 1 refused; 2 the data dir is unusable: the token commands on a dir that
  holds no exchange journal, or whose tokens.json cannot be read, exit 2 with the reason (a
  mistyped dir is not an exchange without tokens).
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from exchange.events import Phase
from gateway import sessions
from gateway.cli import main
from gateway.sequencer import recover
from ledger.file_store import FileJournal
from tests.exchange.rulebook import SYMBOL
from tests.gateway.conftest import stopped_in_an_auction


def test_accounts_create_journals_an_account(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = str(tmp_path)
    assert main(["accounts", "create", "--data-dir", data_dir, "ops", "--role", "operator"]) == 0
    assert "account ops opened with role operator" in capsys.readouterr().out
    assert main(["accounts", "create", "--data-dir", data_dir, "ops", "--role", "investor"]) == 1
    assert "ALREADY_EXISTS" in capsys.readouterr().err
    exchange, journal, _ = recover(data_dir)
    journal.close()
    assert exchange.state.accounts["ops"].role.value == "operator"
    assert main(["ledger", "verify", data_dir]) == 0


def test_accounts_create_first_ends_the_last_runs_sessions_as_a_server_start_would(
    tmp_path: Path,
) -> None:
    # The journal stopped an hour ago, in an auction that has ended since: opening an account
    # now lets that auction's timer fire, and alice's protected bid must be gone before it.
    auction_end = stopped_in_an_auction(tmp_path, time.time_ns() - 3_600 * 10**9)
    assert auction_end < time.time_ns()
    assert (
        main(["accounts", "create", "--data-dir", str(tmp_path), "zed", "--role", "investor"]) == 0
    )
    exchange, journal, _ = recover(str(tmp_path))
    journal.close()
    assert exchange.state.sessions == {}
    assert exchange.state.instruments[SYMBOL].phase is Phase.CONTINUOUS  # The timer fired.
    assert exchange.state.instruments[SYMBOL].trade_count == 0
    assert exchange.state.accounts["alice"].open_orders == {}


def test_accounts_create_refuses_while_a_server_holds_the_journal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with FileJournal.open(tmp_path):
        code = main(["accounts", "create", "--data-dir", str(tmp_path), "x", "--role", "investor"])
    assert code == 2
    assert "op.open_account" in capsys.readouterr().err


def test_tokens_are_shown_once_and_stored_only_as_hashes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = str(tmp_path)
    assert main(["accounts", "create", "--data-dir", data_dir, "alice", "--role", "investor"]) == 0
    capsys.readouterr()
    assert main(["tokens", "issue", "--data-dir", data_dir, "alice"]) == 0
    header, token = capsys.readouterr().out.strip().splitlines()
    token_id = header.split()[2]
    stored = (tmp_path / sessions.TOKENS_FILE).read_text()
    assert token not in stored
    assert json.loads(stored)["tokens"][0]["sha256"] == sessions.token_hash(token)
    store = sessions.TokenStore(data_dir)
    assert store.account_of(token) == "alice"
    assert main(["tokens", "list", "--data-dir", data_dir]) == 0
    assert capsys.readouterr().out.split() == [token_id, "alice"]
    assert main(["tokens", "revoke", "--data-dir", data_dir, token_id]) == 0
    assert store.account_of(token) is None  # Picked up without a restart.
    assert main(["tokens", "revoke", "--data-dir", data_dir, token_id]) == 1


def test_a_token_is_issued_only_for_an_account_the_journal_opened(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A mistyped account would give whoever is later opened under that id a working token;
    # a mistyped dir, a tokens.json no server reads.
    data_dir = str(tmp_path / "exchange")
    assert main(["tokens", "issue", "--data-dir", data_dir, "alice"]) == 2
    assert not (tmp_path / "exchange").exists()
    assert main(["accounts", "create", "--data-dir", data_dir, "alice", "--role", "investor"]) == 0
    assert main(["tokens", "issue", "--data-dir", data_dir, "alcie"]) == 1
    assert "no account 'alcie'" in capsys.readouterr().err
    with FileJournal.open(data_dir):  # Beside a running server, which holds the lock.
        assert main(["tokens", "issue", "--data-dir", data_dir, "alice"]) == 0
        # ... and while it appends: the last append read half written ends the lookup; it
        # does not make the journal unusable (exit 2).
        segment = max((tmp_path / "exchange" / "journal").glob("*.seg"))
        with segment.open("r+b") as file:
            file.seek(0, 2)
            file.write(b"\x2a\x01\x00")
        assert main(["tokens", "issue", "--data-dir", data_dir, "alice"]) == 0
        assert main(["tokens", "issue", "--data-dir", data_dir, "nobody"]) == 1
    assert [entry.account for entry in sessions.load_tokens(sessions.tokens_path(data_dir))] == [
        "alice",
        "alice",
    ]


def test_tokens_list_and_revoke_exit_2_on_a_data_dir_they_cannot_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "no-such-dir")
    for command in (["list"], ["revoke", "t1"]):
        assert main(["tokens", *command, "--data-dir", missing]) == 2
        assert f"no exchange journal in {missing}" in capsys.readouterr().err
    assert not (tmp_path / "no-such-dir").exists()
    data_dir = str(tmp_path / "exchange")
    assert main(["accounts", "create", "--data-dir", data_dir, "alice", "--role", "investor"]) == 0
    (tmp_path / "exchange" / sessions.TOKENS_FILE).write_text("{not json")
    capsys.readouterr()
    for command in (["list"], ["revoke", "t1"], ["issue", "alice"]):
        assert main(["tokens", *command, "--data-dir", data_dir]) == 2
        assert f"{sessions.TOKENS_FILE} cannot be read" in capsys.readouterr().err


def test_a_token_never_starts_like_a_command_line_option(tmp_path: Path) -> None:
    # It is pasted after `--token` on a command line: a leading "-" would make it an option
    # (one token in 64 did, and `ipx client` refused it).
    tokens = [sessions.issue_token(str(tmp_path), "alice")[0] for _ in range(400)]
    assert not [token for token in tokens if token.startswith("-")]
    assert len(set(tokens)) == 400


ISSUERS = 6
TOKENS_EACH = 4


def test_tokens_issued_and_revoked_at_once_lose_nothing_and_revive_nothing(tmp_path: Path) -> None:
    # Administrators running `ipx tokens` at the same moment: every token shown to a user is
    # stored, and a revoked token stays revoked. Threads call what the CLI calls; each
    # issue and revoke opens the lock and the file anew, as separate processes do.
    data_dir = str(tmp_path)
    doomed = [sessions.issue_token(data_dir, "mallory")[1].token_id for _ in range(ISSUERS)]
    issued: list[str] = []

    def administrator(index: int) -> None:
        for _ in range(TOKENS_EACH):
            issued.append(sessions.issue_token(data_dir, f"user{index}")[0])
        assert sessions.revoke_token(data_dir, doomed[index]) is not None

    with ThreadPoolExecutor(ISSUERS) as pool:
        list(pool.map(administrator, range(ISSUERS)))
    store = sessions.TokenStore(data_dir)
    assert len(issued) == ISSUERS * TOKENS_EACH
    assert all(store.account_of(token) is not None for token in issued)
    stored = sessions.load_tokens(sessions.tokens_path(data_dir))
    assert {entry.account for entry in stored} == {f"user{index}" for index in range(ISSUERS)}
    assert len(stored) == ISSUERS * TOKENS_EACH
    assert sorted(path.name for path in tmp_path.iterdir()) == ["tokens.json", "tokens.lock"]


def test_serve_refuses_a_data_dir_another_server_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    try:
        with FileJournal.open(tmp_path):
            assert main(["serve", "--data-dir", str(tmp_path), "--port", "0"]) == 2
        assert "open in another writer" in capsys.readouterr().err
    finally:
        # `ipx serve` installs its log handler on the root logger, bound to this test's
        # captured stderr: left there, later tests' logs would go to a closed stream.
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved:
            root.addHandler(handler)
        root.setLevel(level)
