"""Replay a journal in a fresh process and print what it gives, for the determinism tests.

Usage (from the repository root):
    python -m tests.exchange.replay_worker <journal directory> [--from-snapshot]

From genesis it reads the journal without locking or changing it (ledger.file_store
.read_journal); with --from-snapshot it opens it (FileJournal.open), restores the latest valid
snapshot and replays the tail. Every replayed command must give back its record exactly (seq,
ts_ns, kind, command bytes, postings), or the worker exits with status 1 naming the seq.

Prints one line:
    records=<replayed> from_seq=<first> state_hash=<hex> events_hash=<hex> head_hash=<hex>
events_hash digests the events of every replayed command (`events_digest`), so two processes
that print the same line produced the same events, not only the same final state.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterable, Sequence

import msgspec

from exchange.commands import command_decoder
from exchange.core import Exchange
from exchange.events import Event
from ledger.file_store import FileJournal, read_journal
from ledger.records import GENESIS_HASH, Record

_events_encoder = msgspec.msgpack.Encoder()


def events_digest(digest: hashlib._Hash, events: Sequence[Event]) -> None:
    """Fold one command's events into a running digest (length-prefixed, so unambiguous)."""
    data = _events_encoder.encode(events)
    digest.update(len(data).to_bytes(8, "big"))
    digest.update(data)


def replay(exchange: Exchange, records: Iterable[Record]) -> tuple[int, int, bytes, bytes]:
    """Replay records, checking each; return (count, first seq, events digest, head hash)."""
    digest = hashlib.sha256()
    count = first_seq = 0
    head = GENESIS_HASH
    for record in records:
        outcome = exchange.handle(command_decoder.decode(record.command), record.ts_ns)
        if outcome.record != record.body():
            raise SystemExit(f"record {record.seq} ({record.kind}) does not replay to itself")
        events_digest(digest, outcome.events)
        first_seq = first_seq or record.seq
        count += 1
        head = record.hash
    return count, first_seq, digest.digest(), head


def main(argv: Sequence[str]) -> int:
    if len(argv) not in (2, 3) or (len(argv) == 3 and argv[2] != "--from-snapshot"):
        print(__doc__, file=sys.stderr)
        return 2
    directory = argv[1]
    if len(argv) == 2:
        exchange = Exchange()
        count, first_seq, events_hash, head = replay(exchange, read_journal(directory))
    else:
        with FileJournal.open(directory) as journal:
            snapshot = journal.latest_snapshot()
            if snapshot is None:
                print("no valid snapshot", file=sys.stderr)
                return 1
            exchange = Exchange.from_snapshot(snapshot.state)
            if exchange.state_hash() != snapshot.state_hash:
                print(f"snapshot {snapshot.seq} restores another state", file=sys.stderr)
                return 1
            count, first_seq, events_hash, head = replay(
                exchange, journal.records(snapshot.seq + 1)
            )
    print(
        f"records={count} from_seq={first_seq} state_hash={exchange.state_hash().hex()} "
        f"events_hash={events_hash.hex()} head_hash={head.hex()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
