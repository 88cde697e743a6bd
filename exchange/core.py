"""The exchange core: one deterministic function from (command, ts_ns) to events and a record.

Invariants:
- `handle` is synchronous and pure: no clock, no randomness, no I/O. Time and the sequence
  number are inputs; the same commands at the same times give the same events, the same
  records and the same `state_hash()`, in any process, under any PYTHONHASHSEED.
- Every command, accepted or rejected, becomes exactly one journal record (seq = previous + 1)
  holding the encoded command and every posting it caused, timers included. Replaying the
  records through `handle` reproduces each record exactly: its seq, its kind (the command's
  tag, which ledger.verify trusts to decide who may move value across the boundary), its
  command bytes (canonical: re-encoding the decoded command gives them back) and its postings
  (`replay_record` checks all four).
- Each account's private events (exchange.events.PRIVATE_EVENTS) are numbered 1, 2, 3, ...
  in the order `handle` makes them: after a command, Account.execution_seq is the number of
  the account's last one (the gateway's per-account seq of execution reports). Each is
  counted where it is made (trading.py, admin.py); the rulebook checks every scenario.
- Operator commands are refused (FORBIDDEN) unless the actor is an operator account or the
  local administrator (ADMIN_ACTOR, the host's command line; never a network client).
- A broken invariant is a crash (AssertionError, PostingRejected out of settlement), never a
  rejection: the process stops and recovers from the journal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from exchange import admin, disconnect, snapshot, trading
from exchange.commands import (
    OPERATOR_COMMANDS,
    AmendOrder,
    CancelAll,
    CancelOrder,
    CloseMarket,
    Command,
    Deposit,
    DistributeRoyalty,
    EndSession,
    Halt,
    IssueShares,
    KillSwitch,
    ListAsset,
    OpenAccount,
    OpenOffering,
    PlaceOrder,
    Resume,
    Role,
    SetCancelOnDisconnect,
    StartAuction,
    Tick,
    Withdraw,
    command_decoder,
    command_encoder,
    command_kind_of,
)
from exchange.context import Context
from exchange.events import CommandRejected, Event, IndicativeUpdated
from exchange.phases import CALL_PHASES
from exchange.reasons import Reject
from exchange.state import ExchangeState
from exchange.timers import advance_clock, auction_reference_price, next_timer_ns
from exchange.trading import Rejection
from ledger.balances import Balances
from ledger.records import Posting, Record, RecordBody

ADMIN_ACTOR = "@admin"
_encode = command_encoder.encode

Handler = Callable[[ExchangeState, Context, Any], Event | None]


def _tick(state: ExchangeState, ctx: Context, command: Tick) -> None:
    return None  # Its work (the timers) is done before any command.


_HANDLERS: dict[type, Handler] = {
    PlaceOrder: trading.place_order,
    CancelOrder: trading.cancel_order,
    AmendOrder: trading.amend_order,
    CancelAll: trading.cancel_all,
    OpenAccount: admin.open_account,
    Deposit: admin.deposit,
    Withdraw: admin.withdraw,
    ListAsset: admin.list_asset,
    IssueShares: admin.issue_shares,
    OpenOffering: admin.open_offering,
    DistributeRoyalty: admin.distribute_royalty,
    Halt: admin.halt,
    Resume: admin.resume,
    StartAuction: admin.start_volatility_auction,
    CloseMarket: admin.close_market,
    KillSwitch: admin.kill_switch,
    SetCancelOnDisconnect: disconnect.set_cancel_on_disconnect,
    EndSession: disconnect.end_session,
    Tick: _tick,
}
# Per command class, what handle() needs of it in one lookup: its handler, its record kind,
# and whether only an operator may send it.
_DISPATCH: dict[type, tuple[Handler, str, bool]] = {
    kind: (handler, command_kind_of(kind), kind in OPERATOR_COMMANDS)
    for kind, handler in _HANDLERS.items()
}


class Outcome(msgspec.Struct, frozen=True):
    """What one command did: the reply to its sender, every event, and its journal record."""

    seq: int
    ts_ns: int
    reply: Event | None  # None for a Tick: nobody waits for an answer.
    events: list[Event]
    record: RecordBody


class ReplayMismatch(AssertionError):
    """Replaying a record did not reproduce it: the journal and the code disagree at this seq.

    Either the record was altered (and its hash chain recomputed), or it was written by code
    with other rules. An AssertionError: in the engine's own recovery it is a crash.
    """

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(f"record {seq} does not replay: {reason}")
        self.seq = seq
        self.reason = reason


class Exchange:
    """The whole exchange, driven one command at a time by the sequencer."""

    __slots__ = ("balances", "state")

    def __init__(self) -> None:
        self.state = ExchangeState()
        self.balances = Balances()

    @property
    def seq(self) -> int:
        """The seq of the last command handled (0 before the first)."""
        return self.state.seq

    def handle(self, command: Command, ts_ns: int) -> Outcome:
        """Apply one command at time ts_ns; return what it did and its journal record."""
        state = self.state
        seq = state.seq + 1
        ctx = Context(self.balances, seq, ts_ns)
        if state.last_ts_ns <= ts_ns < state.next_timer_ns:
            state.last_ts_ns = ts_ns  # No timer is due: advance_clock's fast path, inlined.
        else:
            advance_clock(state, ctx)
        handler, kind, operator_only = _DISPATCH[command.__class__]
        try:
            if operator_only:
                self._authorize_operator(command.actor)
            reply = handler(state, ctx, command)
        except Rejection as rejection:
            reply = CommandRejected(command.actor, kind, rejection.reason, rejection.message)
            ctx.events.append(reply)
        if ctx.touched:
            self._publish_indicatives(ctx, ctx.touched)
        if ctx.timers_changed:
            state.next_timer_ns = next_timer_ns(state)
        state.seq = seq
        record = RecordBody(seq, ts_ns, kind, _encode(command), tuple(ctx.postings))
        return Outcome(seq, ts_ns, reply, ctx.events, record)

    def timer_due(self, ts_ns: int) -> bool:
        """Whether a timer would fire at ts_ns: an idle sequencer journals a Tick only then.

        The next timer is cached and may be early (a GTD order canceled since still set it);
        it is worked out again here, which changes no outcome: the cache only decides whether
        a command looks for due timers, and finding none does nothing.
        """
        state = self.state
        if ts_ns < state.next_timer_ns:
            return False
        state.next_timer_ns = next_timer_ns(state)
        return ts_ns >= state.next_timer_ns

    def _authorize_operator(self, actor: str) -> None:
        if actor == ADMIN_ACTOR:
            return
        account = self.state.accounts.get(actor)
        if account is None or account.role is not Role.OPERATOR:
            raise Rejection(Reject.FORBIDDEN, "this command needs an operator")

    def _publish_indicatives(self, ctx: Context, touched: dict[str, None]) -> None:
        instruments = self.state.instruments
        for symbol in touched:
            instrument = instruments[symbol]
            if instrument.phase not in CALL_PHASES:
                continue  # Its indicative was cleared when it left them (phases.set_phase).
            indicative = instrument.book.indicative(auction_reference_price(instrument))
            now = (
                (0, 0, 0)
                if indicative is None
                else (indicative.price_ticks, indicative.volume_units, indicative.imbalance_units)
            )
            if now != instrument.indicative:
                instrument.indicative = now
                ctx.events.append(IndicativeUpdated(symbol, *now))

    def state_hash(self) -> bytes:
        """Return a digest of the whole state: equal for equal histories, in any process."""
        return snapshot.state_hash(self.state, self.balances)

    def snapshot(self) -> bytes:
        """Return the whole state as bytes, to be restored by `from_snapshot`."""
        return snapshot.encode_state(self.state, self.balances)

    @classmethod
    def from_snapshot(cls, data: bytes) -> Exchange:
        """Rebuild an exchange from `snapshot()` bytes."""
        exchange = cls()
        exchange.state, exchange.balances = snapshot.decode_state(data)
        # Derived, so not in the snapshot: left at 0 it says a timer is due, and an idle
        # sequencer would journal a Tick after every restart from a snapshot.
        exchange.state.next_timer_ns = next_timer_ns(exchange.state)
        return exchange

    def replay(self, records: Iterable[Record]) -> int:
        """Re-apply journal records, checking each reproduces itself; return the count.

        Raises:
            ReplayMismatch: at the first record that `replay_record` refuses, naming its seq.
        """
        count = 0
        for record in records:
            self.replay_record(record)
            count += 1
        return count

    def replay_record(self, record: Record) -> Outcome:
        """Re-apply one journal record, checking that handling its command writes it exactly.

        Raises:
            ReplayMismatch: the command bytes do not decode to a command, or the seq, the kind,
                the command bytes or the postings differ from what handling the command gives
                now. The exchange has then handled the command (or not, if it did not decode)
                and must not be used further.
        """
        try:
            command = command_decoder.decode(record.command)
        except msgspec.DecodeError as error:  # ValidationError is a DecodeError too.
            raise ReplayMismatch(
                record.seq, f"its command bytes do not decode to a command ({error})"
            ) from error
        outcome = self.handle(command, record.ts_ns)
        written = outcome.record
        if written.seq != record.seq:
            raise ReplayMismatch(record.seq, f"it is seq {written.seq} on replay")
        # The kind is checked apart from the postings: ledger.verify lets value cross the
        # boundary by kind alone, so a relabelled record must not pass with its postings intact.
        if written.kind != record.kind:
            raise ReplayMismatch(
                record.seq,
                f"its kind is {record.kind} but its command is {command.__class__.__name__} "
                f"(kind {written.kind})",
            )
        if written.command != record.command:
            raise ReplayMismatch(
                record.seq, f"its command bytes are not the canonical encoding of {command!r}"
            )
        if written.postings != record.postings:
            raise ReplayMismatch(
                record.seq, _postings_difference(written.postings, record.postings)
            )
        return outcome


def _postings_difference(replayed: tuple[Posting, ...], recorded: tuple[Posting, ...]) -> str:
    # The first posting that differs, in words: a trade's record can hold dozens of postings.
    for number, (made, held) in enumerate(zip(replayed, recorded, strict=False), start=1):
        if made != held:
            made_text, held_text = _posting_text(made), _posting_text(held)
            return f"posting {number} is {held_text}, its command makes {made_text}"
    return f"it holds {len(recorded)} postings, its command makes {len(replayed)}"


def _posting_text(posting: Posting) -> str:
    return (
        f"{posting.amount} {posting.asset} from {posting.debit_account} "
        f"{posting.debit_bucket.value} to {posting.credit_account} {posting.credit_bucket.value}"
    )
