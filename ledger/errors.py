"""Errors raised by the ledger package: one root, so callers can catch the whole family.

```
LedgerError
├── JournalError
│   ├── JournalCorrupt(seq: int, path: str, offset: int, reason: str)
│   └── JournalStopped
├── PostingRejected(reason: str)
├── VerificationFailed(seq: int, reason: str)
└── ProofError(reason: str)
```

Invariants:
- Every exception carries the facts a human needs to find the problem (seq, file, offset, reason)
  as attributes as well as in its message.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Root of every error raised by the ledger package."""


class JournalError(LedgerError):
    """The journal on disk cannot be read or written as the contract requires."""


class JournalCorrupt(JournalError):
    """A frame before the tail is damaged: the first bad seq and where it sits on disk."""

    def __init__(self, seq: int, path: str, offset: int, reason: str) -> None:
        super().__init__(f"journal corrupt at seq {seq} ({path} offset {offset}): {reason}")
        self.seq = seq
        self.path = path
        self.offset = offset
        self.reason = reason


class JournalStopped(JournalError):
    """An earlier write or fsync failed; the writer refuses everything after it."""


class PostingRejected(LedgerError):
    """A posting would make an internal balance negative, or is malformed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class VerificationFailed(LedgerError):
    """The journal breaks a rule at this seq (chain, continuity, balances or conservation)."""

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(f"verification failed at seq {seq}: {reason}")
        self.seq = seq
        self.reason = reason


class ProofError(LedgerError):
    """A Merkle proof, receipt or checkpoint does not verify."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
