"""The exchange core: one deterministic function from (command, ts_ns) to events and a record.

Invariants:
- `handle` is synchronous and pure: no clock, no randomness, no I/O. Time and the sequence
  number are inputs; the same commands at the same times give the same events, the same
  records and the same `state_hash()`, in any process, under any PYTHONHASHSEED.
- Every command, accepted or rejected, becomes exactly one journal record (seq = previous + 1)
  holding the encoded command and every posting it caused, timers included. Replaying the
  records through `handle` reproduces their postings exactly (`replay` checks it).
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
from ledger.records import Record, RecordBody

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
    """Replaying a record did not reproduce its postings: the journal and the code disagree."""


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
        return exchange

    def replay(self, records: Iterable[Record]) -> int:
        """Re-apply journal records, checking each reproduces its postings; return the count.

        Raises:
            ReplayMismatch: a record's seq or postings differ from what handling its command
                gives now.
        """
        count = 0
        for record in records:
            command = command_decoder.decode(record.command)
            outcome = self.handle(command, record.ts_ns)
            if outcome.record.seq != record.seq or outcome.record.postings != record.postings:
                raise ReplayMismatch(
                    f"record {record.seq} ({record.kind}) does not replay to its postings"
                )
            count += 1
        return count
