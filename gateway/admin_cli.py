"""`ipx accounts` and `ipx tokens`: the host's administrator, working on a stopped exchange's dir.

    ipx accounts create --data-dir DIR ACCOUNT_ID --role {investor,issuer,market_maker,operator}
    ipx tokens issue --data-dir DIR ACCOUNT_ID      prints a new API token once (for an
                                                    account the journal opened)
    ipx tokens revoke --data-dir DIR TOKEN_ID
    ipx tokens list --data-dir DIR                  ids and accounts, never tokens

`accounts create` journals an OpenAccount whose actor is ADMIN_ACTOR: it opens the journal
(refusing while a server holds its lock: then use op.open_account over the gateway),
recovers the exchange, handles the one command, appends it with an fsync, and closes.
Tokens live in DIR/tokens.json as SHA-256 hashes (gateway/sessions.py); a running server
picks up a change at the next logon or within TOKEN_POLL_S, and closes the sessions of a
revoked token (close code 4001, "token revoked").

Exit codes: 0 done; 1 the exchange refused (the reason is printed); 2 the data dir is unusable
(no exchange journal in it, or a tokens.json that cannot be read) or locked by a running
server.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from exchange.commands import OpenAccount, Role, command_decoder
from exchange.core import ADMIN_ACTOR
from exchange.events import CommandRejected, Event
from gateway import sessions
from gateway.ledger_cli import TORN_TAIL_PREFIX
from gateway.sequencer import end_stale_sessions, recover
from ledger.errors import JournalCorrupt, JournalError
from ledger.file_store import JOURNAL_DIR, read_journal

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_UNUSABLE = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `accounts` and `tokens` groups to `ipx`."""
    accounts = subparsers.add_parser("accounts", help="open accounts (on a stopped exchange)")
    account_commands = accounts.add_subparsers(dest="accounts_command", required=True)
    create = account_commands.add_parser("create", help="open an account")
    create.add_argument("--data-dir", required=True, help="the exchange's data directory")
    create.add_argument("account_id", metavar="ACCOUNT_ID")
    create.add_argument("--role", required=True, choices=[role.value for role in Role])
    create.set_defaults(handler=run_create_account)

    tokens = subparsers.add_parser("tokens", help="issue, revoke and list API tokens")
    token_commands = tokens.add_subparsers(dest="tokens_command", required=True)
    issue = token_commands.add_parser("issue", help="issue a token for an account")
    issue.add_argument("--data-dir", required=True)
    issue.add_argument("account_id", metavar="ACCOUNT_ID")
    issue.set_defaults(handler=run_issue_token)
    revoke = token_commands.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("--data-dir", required=True)
    revoke.add_argument("token_id", metavar="TOKEN_ID")
    revoke.set_defaults(handler=run_revoke_token)
    listing = token_commands.add_parser("list", help="list token ids and their accounts")
    listing.add_argument("--data-dir", required=True)
    listing.set_defaults(handler=run_list_tokens)


def create_account(data_dir: str, account_id: str, role: Role) -> Event:
    """Journal OpenAccount(ADMIN_ACTOR, ...) on a stopped exchange; return its reply.

    Raises:
        JournalError: a server holds the journal, or it is damaged.
    """
    exchange, journal, _ = recover(data_dir)
    try:
        # The last run's sessions first, as `ipx serve` would: before any timer can fire.
        end_stale_sessions(exchange, journal)
        ts_ns = max(time.time_ns(), exchange.state.last_ts_ns + 1)
        outcome = exchange.handle(OpenAccount(ADMIN_ACTOR, account_id, role), ts_ns)
        journal.append_bodies([outcome.record])
    finally:
        journal.close()
    assert outcome.reply is not None
    return outcome.reply


def run_create_account(arguments: argparse.Namespace) -> int:
    try:
        reply = create_account(arguments.data_dir, arguments.account_id, Role(arguments.role))
    except JournalError as error:
        print(
            f"ipx accounts create: {error} (is `ipx serve` running? then use op.open_account)",
            file=sys.stderr,
        )
        return EXIT_UNUSABLE
    if isinstance(reply, CommandRejected):
        print(f"refused: {reply.reason.value}: {reply.message}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"account {arguments.account_id} opened with role {arguments.role}")
    return EXIT_OK


class NoSuchAccount(Exception):
    """A token was asked for an account the journal never opened."""


def check_account_opened(data_dir: str, account_id: str) -> None:
    """Check that data_dir holds a journal that opened account_id, before a token is issued.

    A token for a mistyped account would log on whoever is later opened under that id; a
    mistyped dir would get a tokens.json of its own that no server reads. The journal is read
    without its lock (read_journal), so this works beside a running server, which journals
    op.open_account before it answers.

    Raises:
        JournalError: there is no journal under data_dir, or it is damaged.
        NoSuchAccount: the journal never opened account_id.
    """
    if not os.path.isdir(os.path.join(data_dir, JOURNAL_DIR)):
        raise JournalError(f"no exchange journal in {data_dir}")
    if not _opened_in_journal(data_dir, account_id):
        raise NoSuchAccount(f"no account {account_id!r} was opened")


def _opened_in_journal(data_dir: str, account_id: str) -> bool:
    try:
        for record in read_journal(data_dir):
            if record.kind == "open_account":
                command = command_decoder.decode(record.command)
                if isinstance(command, OpenAccount) and command.account_id == account_id:
                    return True
    except JournalCorrupt as error:
        # Beside a running server the last append may be read half written: the records
        # before it are whole, and an account it opens was not acknowledged yet.
        if not error.reason.startswith(TORN_TAIL_PREFIX):
            raise
    return False


class UnusableDataDir(Exception):
    """The data dir holds no exchange journal, or its tokens.json cannot be read."""


def check_tokens_file(data_dir: str) -> None:
    """Check that data_dir is an exchange's and its tokens.json (if any) can be read.

    A mistyped dir is no exchange without tokens: `tokens list` would print nothing and
    `tokens revoke` refuse, as if all were well.

    Raises:
        UnusableDataDir: with the reason.
    """
    if not os.path.isdir(os.path.join(data_dir, JOURNAL_DIR)):
        raise UnusableDataDir(f"no exchange journal in {data_dir}")
    path = sessions.tokens_path(data_dir)
    try:
        sessions.load_tokens(path)
    except (OSError, ValueError, KeyError, TypeError) as error:  # Unreadable, or not its shape.
        raise UnusableDataDir(f"{path} cannot be read: {error!r}") from error


def run_issue_token(arguments: argparse.Namespace) -> int:
    try:
        check_account_opened(arguments.data_dir, arguments.account_id)
        check_tokens_file(arguments.data_dir)
    except (JournalError, UnusableDataDir) as error:
        print(f"ipx tokens issue: {error}", file=sys.stderr)
        return EXIT_UNUSABLE
    except NoSuchAccount as error:
        print(f"refused: {error}", file=sys.stderr)
        return EXIT_REFUSED
    token, entry = sessions.issue_token(arguments.data_dir, arguments.account_id)
    print(f"token id {entry.token_id} for account {entry.account} (shown once, store it now):")
    print(token)
    return EXIT_OK


def run_revoke_token(arguments: argparse.Namespace) -> int:
    try:
        check_tokens_file(arguments.data_dir)
    except UnusableDataDir as error:
        print(f"ipx tokens revoke: {error}", file=sys.stderr)
        return EXIT_UNUSABLE
    entry = sessions.revoke_token(arguments.data_dir, arguments.token_id)
    if entry is None:
        print(f"no token with id {arguments.token_id}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"token {entry.token_id} of account {entry.account} revoked")
    return EXIT_OK


def run_list_tokens(arguments: argparse.Namespace) -> int:
    try:
        check_tokens_file(arguments.data_dir)
    except UnusableDataDir as error:
        print(f"ipx tokens list: {error}", file=sys.stderr)
        return EXIT_UNUSABLE
    for entry in sessions.load_tokens(sessions.tokens_path(arguments.data_dir)):
        print(f"{entry.token_id}  {entry.account}")
    return EXIT_OK
