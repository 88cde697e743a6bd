"""A journal writer process for the crash test, and the deterministic records it writes.

Run: python -m tests.ledger.journal_writer DIR SEED [--segment-bytes N] [--batch-max N]
It opens (and so recovers) the journal under DIR, then appends batches of random size for
ever. After each append returns (the batch is fsynced) it prints "ack <last seq>" and flushes,
so every line the parent reads names a record that must survive a kill -9. Before the first
batch it prints "ready <last seq after recovery> <torn bytes truncated>".

The content of record `seq` depends on seq alone (body_for), so a reader can check not only
that every acknowledged record is there but that it is the record that was written.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys

from ledger.file_store import FileJournal
from ledger.records import BANK_ACCOUNT, Bucket, Posting, RecordBody

TS_NS_BASE = 1_700_000_000_000_000_000


def body_for(seq: int, *, command_bytes: int = 48, postings: int = 2) -> RecordBody:
    """Return the record body the writer appends at seq: a function of seq alone."""
    seed = hashlib.sha256(seq.to_bytes(8, "little")).digest()
    command = (seed * (command_bytes // len(seed) + 1))[:command_bytes]
    legs = tuple(
        Posting(
            asset="USD" if index % 2 == 0 else "RS-US10123456B2",
            amount=1 + int.from_bytes(seed[index * 4 : index * 4 + 4], "little") % 1_000_000,
            debit_account=BANK_ACCOUNT if index == 0 else f"acct-{seed[index] % 16}",
            debit_bucket=Bucket.AVAILABLE,
            credit_account=f"acct-{seed[index + 8] % 16}",
            credit_bucket=Bucket.HELD if index % 2 else Bucket.AVAILABLE,
        )
        for index in range(postings)
    )
    return RecordBody(seq, TS_NS_BASE + seq * 1_000, "deposit", command, legs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("directory")
    parser.add_argument("seed", type=int)
    parser.add_argument("--segment-bytes", type=int, default=64 << 10)
    parser.add_argument("--batch-max", type=int, default=256)
    parser.add_argument("--batches-max", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    journal = FileJournal.open(args.directory, segment_bytes_max=args.segment_bytes)
    out = sys.stdout
    out.write(f"ready {journal.last_seq} {journal.recovery.torn_bytes_truncated}\n")
    out.flush()
    # Bounded so a writer the parent forgot to kill still ends.
    for _ in range(args.batches_max):
        first = journal.last_seq + 1
        # Log-uniform sizes: mostly small batches, now and then a large write to be cut.
        size = min(args.batch_max, int(args.batch_max ** rng.random()))
        journal.append_bodies([body_for(seq) for seq in range(first, first + size)])
        out.write(f"ack {journal.last_seq}\n")
        out.flush()
    journal.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
