"""Verify a journal from its records alone: chain, continuity, balances and conservation.

Invariants checked, record by record (the first failure raises VerificationFailed naming the seq):
- Continuity: seqs are 1, 2, 3, ... with no gap, repeat or reordering.
- Chain: each record's prev_hash is the previous record's hash (GENESIS_HASH for seq 1), and
  its hash equals record_hash(prev_hash, body) recomputed here.
- Balances: the postings of each record, applied to balances rebuilt from nothing, are valid
  and leave no internal account's available or held part negative (ledger.balances rules).
- World flows: a posting touching a world account appears only in a record whose kind is in
  WORLD_FLOWS[account]; a world account missing from WORLD_FLOWS may never be touched. So units
  enter or leave only through issue_shares records and cash only through deposit and withdraw.
- Asset classes: an asset that crosses the boundary through BANK_ACCOUNT is cash and one that
  crosses it through ISSUANCE_ACCOUNT is units; no asset may be both (shares cannot be
  deposited, cash cannot be issued).
- Bounds: no more than BALANCE_MAX of an asset is ever inside the exchange (what flowed in
  through a world account, net), so every balance, world accounts' included, fits the
  journal's 64-bit integers and the report can encode them.
- Conservation, at the end: for every asset, the internal total (sum of available + held over
  internal accounts) equals exactly the net amount that flowed in from world accounts. Postings
  are balanced by construction, so this re-checks the balance arithmetic itself.

Nothing here reads files or needs the matching engine: it is fed Record values, e.g. from
ledger.file_store.read_journal().
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from ledger.balances import Balances
from ledger.errors import PostingRejected, VerificationFailed
from ledger.records import (
    BALANCE_MAX,
    BANK_ACCOUNT,
    GENESIS_HASH,
    ISSUANCE_ACCOUNT,
    WORLD_FLOWS,
    WORLD_PREFIX,
    Record,
    record_hash,
)

_NO_KINDS: frozenset[str] = frozenset()
# What an asset is, decided by the world account it crosses the boundary through.
_ASSET_CLASS = {BANK_ACCOUNT: "cash", ISSUANCE_ACCOUNT: "units"}


class VerifyReport(msgspec.Struct, frozen=True):
    """What a journal that verified contains; per-asset dicts are sorted by asset."""

    records: int
    last_seq: int  # 0 for an empty journal.
    head_hash: bytes  # Hash of the last record; GENESIS_HASH for an empty journal.
    state_hash: bytes  # Balances.state_hash() of the balances rebuilt from the postings.
    totals: dict[str, int]  # Per asset: sum of available + held over internal accounts.
    issued_units: dict[str, int]  # Per units asset: net amount that came from ISSUANCE_ACCOUNT.
    net_deposits: dict[str, int]  # Per cash asset: deposits minus withdrawals via BANK_ACCOUNT.


class JournalVerifier:
    """Check records one at a time, so a caller can report progress up to a failure."""

    def __init__(self) -> None:
        self.balances = Balances()
        self.records = 0
        self.last_seq = 0
        self.head_hash = GENESIS_HASH
        # Net inflow per world account per asset (positive: value came into the exchange).
        self._inflows: dict[str, dict[str, int]] = {}
        self._class_of_asset: dict[str, str] = {}

    def add(self, record: Record) -> None:
        """Check one record against everything before it, then take it in.

        Raises:
            VerificationFailed: the record breaks a rule; the verifier must not be fed further.
        """
        expected = self.last_seq + 1
        if record.seq != expected:
            raise VerificationFailed(
                expected, f"seq gap: expected seq {expected}, found {record.seq}"
            )
        if record.prev_hash != self.head_hash:
            raise VerificationFailed(
                record.seq,
                f"broken link: prev_hash {record.prev_hash.hex()} is not the hash of seq "
                f"{record.seq - 1} ({self.head_hash.hex()})",
            )
        recomputed = record_hash(record.prev_hash, record.body())
        if record.hash != recomputed:
            raise VerificationFailed(
                record.seq,
                f"altered record: stored hash {record.hash.hex()}, recomputed {recomputed.hex()}",
            )
        flows = self._world_flows(record)
        self._check_bounds(record.seq, flows)
        try:
            self.balances.apply(record.postings)
        except PostingRejected as error:
            raise VerificationFailed(record.seq, f"invalid postings: {error.reason}") from error
        # Only now, with the record accepted, does the verifier's state move.
        for account, asset, amount in flows:
            if account in _ASSET_CLASS:
                self._class_of_asset.setdefault(asset, _ASSET_CLASS[account])
            inflows = self._inflows.setdefault(account, {})
            inflows[asset] = inflows.get(asset, 0) + amount
        self.records += 1
        self.last_seq = record.seq
        self.head_hash = record.hash

    def report(self) -> VerifyReport:
        """Check conservation over everything added so far and summarize it.

        Raises:
            VerificationFailed: internal totals differ from what flowed in from the world.
        """
        totals = self.balances.totals()
        inflow: dict[str, int] = {}
        for flows in self._inflows.values():
            for asset, amount in flows.items():
                inflow[asset] = inflow.get(asset, 0) + amount
        inflow = {asset: amount for asset, amount in sorted(inflow.items()) if amount}
        if totals != inflow:
            raise VerificationFailed(
                self.last_seq,
                f"conservation broken: internal totals {totals} but world inflows {inflow}",
            )
        for account, flows in sorted(self._inflows.items()):
            for asset, amount in sorted(flows.items()):
                if self.balances.available(account, asset) != -amount:
                    raise VerificationFailed(
                        self.last_seq,
                        f"conservation broken: {account} has "
                        f"{self.balances.available(account, asset)} {asset} but {amount} "
                        f"flowed in through it",
                    )
        return VerifyReport(
            records=self.records,
            last_seq=self.last_seq,
            head_hash=self.head_hash,
            state_hash=self.balances.state_hash(),
            totals=totals,
            issued_units=dict(sorted(self._inflows.get(ISSUANCE_ACCOUNT, {}).items())),
            net_deposits=dict(sorted(self._inflows.get(BANK_ACCOUNT, {}).items())),
        )

    def _check_bounds(self, seq: int, flows: list[tuple[str, str, int]]) -> None:
        # What is inside the exchange is what flowed in; past BALANCE_MAX the balances (the
        # world account's first) would leave the 64 bits of the encoding.
        inflows: dict[tuple[str, str], int] = {}
        for account, asset, amount in flows:
            key = (account, asset)
            before = inflows.get(key, self._inflows.get(account, {}).get(asset, 0))
            inflows[key] = before + amount
        for (account, asset), inflow in inflows.items():
            if inflow > BALANCE_MAX:
                raise VerificationFailed(
                    seq,
                    f"{inflow} {asset} would be inside the exchange through {account}, "
                    f"more than BALANCE_MAX ({BALANCE_MAX}) {asset}",
                )

    def _world_flows(self, record: Record) -> list[tuple[str, str, int]]:
        # Check every posting that crosses the boundary and return the crossings as
        # (world account, asset, inflow); inflow is negative when value leaves the exchange.
        flows: list[tuple[str, str, int]] = []
        classes: dict[str, str] = {}
        for posting in record.postings:
            for account, sign in ((posting.debit_account, 1), (posting.credit_account, -1)):
                if not account.startswith(WORLD_PREFIX):
                    continue
                allowed = WORLD_FLOWS.get(account, _NO_KINDS)
                if record.kind not in allowed:
                    raise VerificationFailed(
                        record.seq,
                        f"{record.kind} record moves {posting.amount} {posting.asset} through "
                        f"world account {account}, which only {_kinds_phrase(allowed)} may touch",
                    )
                asset_class = _ASSET_CLASS.get(account)
                if asset_class is not None:
                    known = classes.setdefault(
                        posting.asset, self._class_of_asset.get(posting.asset, asset_class)
                    )
                    if known != asset_class:
                        raise VerificationFailed(
                            record.seq,
                            f"{posting.asset} moves through {account} as {asset_class} but it "
                            f"is {known}: cash is never issued and units are never deposited",
                        )
                flows.append((account, posting.asset, sign * posting.amount))
        return flows


def verify_records(records: Iterable[Record]) -> VerifyReport:
    """Verify a whole journal given as records in order; return its summary.

    Raises:
        VerificationFailed: at the first record that breaks a rule, naming its seq.
    """
    verifier = JournalVerifier()
    for record in records:
        verifier.add(record)
    return verifier.report()


def _kinds_phrase(kinds: frozenset[str]) -> str:
    if not kinds:
        return "no record kind"
    return "records of kind " + " or ".join(sorted(kinds))
