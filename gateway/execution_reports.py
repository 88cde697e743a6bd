"""Execution reports: an account's private events as the `executions` channel sends them.

Invariants:
- A report is the core's event as it is (its `type` and fields), plus decimal strings beside
  its ticks and minor units. The gateway sends it with the account's seq for it (its
  Account.execution_seq), so every session of the account numbers it alike, and the
  numbering carries on across reconnects and restarts (it is part of the exchange's state).
- An order's report also says, FIX style, what happened (`exec_type`) and the order's status
  right after it (`ord_status`), from the event alone:

      event            exec_type                      ord_status
      order_accepted   new                            open
      order_filled     trade                          filled (no leaves), else partially_filled
      order_amended    replaced                       partially_filled (some filled), else open
      order_canceled   expired (GTD, DAY), else       canceled (no leaves); self-trade prevention
                       canceled                       may only reduce it: then as amended
      order_rejected   rejected                       rejected

  ord_status uses the words of `order.status`. Other private events (cash, royalties, the
  kill switch, ...) carry neither field.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import msgspec

from exchange.events import (
    Event,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
)
from exchange.state import Instrument
from gateway import protocol
from matching.orders import CancelReason

_EXPIRIES = (CancelReason.GTD_EXPIRED, CancelReason.DAY_EXPIRED)


class ExecutionReportPush(msgspec.Struct, frozen=True, tag_field="channel", tag="executions"):
    """One private event of the account: seq/prev_seq number the account's reports (the same
    in every session, across restarts); journal_seq is the record that made it. The event is
    the exchange's (exchange/events.py: its `type` and fields), with decimal strings beside
    ticks and minor units, and for orders exec_type and ord_status."""

    type: Literal["update"]
    seq: int
    prev_seq: int
    journal_seq: int
    event: dict[str, Any]


def order_status(cum_units: int, leaves_units: int) -> str:
    """The status of an order with these units filled and these left."""
    if leaves_units:
        return "partially_filled" if cum_units else "open"
    return "filled"


def exec_fields(event: Event) -> tuple[str, str] | None:
    """(exec_type, ord_status) of an order event; None for any other event."""
    kind = event.__class__
    if kind is OrderFilled:
        return "trade", order_status(event.cum_units, event.leaves_units)  # type: ignore[union-attr]
    if kind is OrderAccepted:
        return "new", "open"
    if kind is OrderCanceled:
        canceled: OrderCanceled = event  # type: ignore[assignment]
        exec_type = "expired" if canceled.reason in _EXPIRIES else "canceled"
        if canceled.leaves_units:
            return exec_type, order_status(canceled.cum_units, canceled.leaves_units)
        return exec_type, "canceled"
    if kind is OrderAmended:
        return "replaced", order_status(event.cum_units, event.leaves_units)  # type: ignore[union-attr]
    if kind is OrderRejected:
        return "rejected", "rejected"
    return None


def decimal_view(event: Event, instruments: dict[str, Instrument]) -> dict[str, Any]:
    """The event as a JSON-ready dict, with a decimal string beside every price in ticks
    (`min_price` beside `min_price_ticks`) and every amount in minor units (`fee` beside
    `fee_minor`): the wire's prices and cash are decimal strings (DESIGN.md §6)."""
    view: dict[str, Any] = msgspec.to_builtins(event)
    instrument = instruments.get(view.get("symbol", ""))
    if instrument is not None:
        currency, tick = instrument.terms.currency, instrument.terms.tick_size_minor
    else:
        currency, tick = view.get("currency", ""), 0
    ticks, minors = _decimal_fields(event.__class__)
    if tick:
        for key in ticks:
            view[key.removesuffix("_ticks")] = protocol.ticks_to_price(view[key], currency, tick)
    if currency:
        for key in minors:
            view[key.removesuffix("_minor")] = protocol.minor_to_amount(view[key], currency)
    return view


@functools.cache
def _decimal_fields(kind: type[Event]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    # An event type's fields in ticks and in minor units, found once per type: every private
    # event an account follows passes here.
    fields = kind.__struct_fields__
    return (
        tuple(name for name in fields if name.endswith("_ticks")),
        tuple(name for name in fields if name.endswith("_minor")),
    )


def report_view(event: Event, instruments: dict[str, Instrument]) -> dict[str, Any]:
    """The event as a JSON-ready dict, with decimal strings and, for orders, the FIX fields."""
    view = decimal_view(event, instruments)
    fields = exec_fields(event)
    if fields is not None:
        view["exec_type"], view["ord_status"] = fields
    return view
