"""A bot's own view of its account, kept from its execution reports alone.

Invariants:
- Built only from the account's execution reports (channel "executions"), applied in their
  seq order from the seq that executions.subscribe answered (`last_seq` at the start: the
  account's reports are numbered from its opening); a gap in seq is recorded (`gaps`), never
  papered over.
- Cash totals (available + held) per currency in minor units: deposits and royalties in,
  withdrawals and royalties paid as a licensee out (its own share as a holder comes back in
  its royalty_paid), a buy pays price x units + fee, a sell receives price x units - fee.
- Units per symbol: + bought, - sold. Open orders: order id -> leaves units (accepted adds,
  fills, cancels and amends set the leaves, 0 removes). Fills: one per (trade_id, order_id).
- It knows an instrument's currency and tick from `terms`, given before any report of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bots.agents import Holdings, OpenOrder


@dataclass(frozen=True, slots=True)
class Terms:
    currency: str
    tick_size_minor: int


@dataclass(frozen=True, slots=True)
class Fill:
    trade_id: int
    order_id: int
    symbol: str
    side: str
    price_ticks: int
    quantity_units: int
    fee_minor: int


@dataclass
class AccountView:
    account: str
    terms: Mapping[str, Terms]
    cash_minor: dict[str, int] = field(default_factory=dict)
    units: dict[str, int] = field(default_factory=dict)
    open_orders: dict[int, OpenOrder] = field(default_factory=dict)
    fills: dict[tuple[int, int], Fill] = field(default_factory=dict)
    last_seq: int = 0
    last_journal_seq: int = 0
    gaps: int = 0

    def apply_report(self, message: Mapping[str, Any]) -> None:
        """Apply one execution report (the push as received)."""
        if message.get("channel") != "executions":
            return
        if message["prev_seq"] != self.last_seq:
            self.gaps += 1
        self.last_seq = message["seq"]
        self.last_journal_seq = max(self.last_journal_seq, message["journal_seq"])
        self.apply_event(message["event"])

    def apply_event(self, event: Mapping[str, Any]) -> None:
        kind = event["type"]
        if kind == "cash_deposited":
            self._cash(event["currency"], event["amount_minor"])
        elif kind == "cash_withdrawn":
            self._cash(event["currency"], -event["amount_minor"])
        elif kind == "royalty_paid":
            self._cash(self.terms[event["symbol"]].currency, event["amount_minor"])
        elif kind == "royalty_charged":  # Its own share comes back in its royalty_paid.
            self._cash(self.terms[event["symbol"]].currency, -event["amount_minor"])
        elif kind == "order_accepted":
            self.open_orders[event["order_id"]] = OpenOrder(
                event["order_id"],
                event["symbol"],
                event["side"],
                event["price_ticks"],
                event["quantity_units"],
            )
        elif kind == "order_filled":
            self._fill(event)
        elif kind in ("order_canceled", "order_amended"):
            self._leaves(event["order_id"], event["leaves_units"], event.get("price_ticks"))

    def _cash(self, currency: str, amount_minor: int) -> None:
        self.cash_minor[currency] = self.cash_minor.get(currency, 0) + amount_minor

    def _leaves(self, order_id: int, leaves_units: int, price_ticks: int | None) -> None:
        order = self.open_orders.get(order_id)
        if order is None:
            return
        if leaves_units == 0:
            del self.open_orders[order_id]
            return
        price = order.price_ticks if price_ticks is None else price_ticks
        self.open_orders[order_id] = OpenOrder(
            order_id, order.symbol, order.side, price, leaves_units
        )

    def _fill(self, event: Mapping[str, Any]) -> None:
        symbol = event["symbol"]
        terms = self.terms[symbol]
        units = event["quantity_units"]
        notional = event["price_ticks"] * terms.tick_size_minor * units
        sign = 1 if event["side"] == "buy" else -1
        self.units[symbol] = self.units.get(symbol, 0) + sign * units
        self._cash(terms.currency, -sign * notional - event["fee_minor"])
        fill = Fill(
            event["trade_id"],
            event["order_id"],
            symbol,
            event["side"],
            event["price_ticks"],
            units,
            event["fee_minor"],
        )
        self.fills[(fill.trade_id, fill.order_id)] = fill
        self._leaves(event["order_id"], event["leaves_units"], None)

    def holdings(self, currency: str) -> Holdings:
        """What an agent decides with: cash in one currency, units, open orders."""
        return Holdings(
            self.cash_minor.get(currency, 0), dict(self.units), tuple(self.open_orders.values())
        )
