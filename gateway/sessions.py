"""API tokens: issued once, stored only as SHA-256 hashes in DATA_DIR/tokens.json.

Invariants:
- The token itself is printed once at issue and never stored: the file holds
  sha256(token) in hex, the account it belongs to, an id (to revoke it by) and its issue time.
- The file is replaced atomically (a temporary file of its own, fsync, rename, directory
  fsync), so a reader sees the old list or the new one, never half of one.
- Issuing and revoking read, change and replace the file under an exclusive lock on
  DATA_DIR/tokens.lock, so two `ipx tokens` commands at once cannot lose each other's change:
  a token shown to a user is always stored, and a revoked one never comes back.
- The server re-reads the file when its inode, modification time or size changes, checked at every
  logon and every TOKEN_POLL_S: a revoked token stops opening sessions without a restart, and
  the sessions it opened are closed (4001 "token revoked") within TOKEN_POLL_S.
- A token is looked up by its hash; the account's role comes from the exchange state, never
  from the token file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

log = logging.getLogger("ipx.sessions")

TOKENS_FILE = "tokens.json"
TOKENS_LOCK_FILE = "tokens.lock"
TOKEN_BYTES = 32  # secrets.token_urlsafe(32): 256 bits, 43 characters.
TOKEN_POLL_S = 0.25  # How often a running server looks for revoked tokens.


@dataclass(frozen=True, slots=True)
class TokenEntry:
    token_id: str
    account: str
    sha256: str
    issued_ts_ns: int


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_path(data_dir: str) -> str:
    return os.path.join(data_dir, TOKENS_FILE)


def load_tokens(path: str) -> list[TokenEntry]:
    """Read the token file; an absent file holds no tokens."""
    try:
        with open(path, encoding="utf-8") as file:
            document = json.load(file)
    except FileNotFoundError:
        return []
    return [
        TokenEntry(item["id"], item["account"], item["sha256"], item["issued_ts_ns"])
        for item in document["tokens"]
    ]


def save_tokens(path: str, entries: list[TokenEntry]) -> None:
    """Replace the token file atomically."""
    document = {
        "tokens": [
            {
                "id": entry.token_id,
                "account": entry.account,
                "sha256": entry.sha256,
                "issued_ts_ns": entry.issued_ts_ns,
            }
            for entry in entries
        ]
    }
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    # A name of its own (mkstemp: owner-only, O_EXCL): a shared name would let one writer
    # rename another's half-written file, or find its own already renamed away.
    fd, temp = tempfile.mkstemp(prefix=TOKENS_FILE + ".", suffix=".tmp", dir=directory)
    try:
        try:
            os.write(fd, json.dumps(document, indent=2).encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def _tokens_locked(data_dir: str) -> Iterator[str]:
    """Hold the token file's lock (blocking); yield the file's path."""
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    lock_fd = os.open(
        os.path.join(data_dir, TOKENS_LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
    )
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)  # Released when the descriptor is closed.
        yield tokens_path(data_dir)
    finally:
        os.close(lock_fd)


def issue_token(data_dir: str, account: str) -> tuple[str, TokenEntry]:
    """Create a token for account; return (the token, to show once, and its stored entry)."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    while token.startswith("-"):  # `ipx client --token -x...` would read it as an option.
        token = secrets.token_urlsafe(TOKEN_BYTES)
    entry = TokenEntry("tok_" + secrets.token_hex(6), account, token_hash(token), time.time_ns())
    with _tokens_locked(data_dir) as path:
        save_tokens(path, [*load_tokens(path), entry])
    return token, entry


def revoke_token(data_dir: str, token_id: str) -> TokenEntry | None:
    """Remove a token by id; return what was removed, or None if there was no such id."""
    with _tokens_locked(data_dir) as path:
        entries = load_tokens(path)
        kept = [entry for entry in entries if entry.token_id != token_id]
        if len(kept) == len(entries):
            return None
        save_tokens(path, kept)
    return next(entry for entry in entries if entry.token_id == token_id)


class TokenStore:
    """The server's view of tokens.json, reloaded when the file changes."""

    def __init__(self, data_dir: str) -> None:
        self._path = tokens_path(data_dir)
        self._signature: tuple[int, int, int] | None = None
        self._unreadable: tuple[int, int, int] | None = None  # The version that failed to load.
        self._by_hash: dict[str, TokenEntry] = {}
        self.generation = 0  # Bumped at every reload: the server then looks for revocations.
        self.reload_if_changed()

    def reload_if_changed(self) -> bool:
        """Re-read the file if it changed; return whether it did."""
        try:
            stat = os.stat(self._path)
            signature: tuple[int, int, int] | None = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            signature = None
        if signature == self._signature:
            return False
        try:
            entries = load_tokens(self._path) if signature is not None else []
        except (OSError, ValueError, KeyError, TypeError) as error:
            # A hand edit left it half written, say. Keep the last good list (a revocation in
            # it applies once it reads again) and retry at the next look: the signature is not
            # taken. Said once per version of the file.
            if signature != self._unreadable:
                self._unreadable = signature
                log.warning("%s cannot be read (%r): the last good list stays", self._path, error)
            return False
        self._unreadable = None
        self._by_hash = {entry.sha256: entry for entry in entries}
        self._signature = signature
        self.generation += 1
        return True

    def is_valid(self, sha256: str) -> bool:
        """Whether a token hash is still in the file as last read."""
        return sha256 in self._by_hash

    def account_of(self, token: str) -> str | None:
        """Return the account a token belongs to, or None for an unknown or revoked token."""
        self.reload_if_changed()
        entry = self._by_hash.get(token_hash(token))
        return None if entry is None else entry.account


ORDER_RATE_PER_S = 500  # Sustained order.place + order.amend per account (cancels: free).
ORDER_BURST = 1_000  # What an idle account may send at once.


class OrderRateLimiter:
    """A token bucket per account: at most `burst` at once, refilled at `rate_per_s`.

    Cancels are not limited: a participant must always be able to reduce its risk. (A cancel
    that names no open order of the account is refused at the gateway's edge instead, as it
    costs a journal record otherwise: gateway/server.py.)
    Time is the gateway's monotonic clock (never the exchange's ts_ns, never journaled).
    """

    def __init__(
        self,
        rate_per_s: float = ORDER_RATE_PER_S,
        burst: int = ORDER_BURST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("the rate must be positive and the burst at least 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # account -> (tokens, at)

    def admit(self, account: str) -> int | None:
        """Take one token for account; return None if admitted, else milliseconds to wait."""
        now = self._clock()
        tokens, at = self._buckets.get(account, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate_per_s)
        if tokens >= 1:
            self._buckets[account] = (tokens - 1, now)
            return None
        self._buckets[account] = (tokens, now)
        return max(1, math.ceil((1 - tokens) / self.rate_per_s * 1000))
