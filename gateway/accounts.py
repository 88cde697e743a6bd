"""Account and instrument views the core does not keep: fills of the day, royalties, patent info,
balances as the wire shows them.

Invariants:
- The fill log is built only from durable batches (the sequencer's subscribers), so a fill is
  visible in account.fills once it is in the journal, never before.
- It is bounded: at most FILLS_PER_ACCOUNT_MAX fills per account (the oldest are dropped and
  the answer says `truncated`), and it holds one trading day (UTC, exchange clock): the first
  outcome of a new day empties it. Memory is therefore at most accounts x the bound.
- It answers in pages, oldest first (`view`): each fill has a position, its number among the
  account's fills recorded by this process, which never changes while the process runs (not
  at a new day either), so `after` a position a walk misses no fill still kept.
- It is not journaled and not rebuilt on restart: `complete_from_seq` is the journal seq from
  which it holds every fill of the day (the first seq this process handled, or the first seq
  of the day). Fills before it are in the journal (`ipx ledger`), not here.
- Royalty figures use integer arithmetic only. Trailing-twelve-month (TTM) royalties are the
  distributions whose record time is within TTM_NS (365 days) before the exchange's clock.
  Per unit they are given with PER_UNIT_EXTRA_DIGITS more decimals than the currency, rounded
  down; the yield at the last price is a percentage with YIELD_DIGITS decimals, rounded down.
  Both are absent (None) when they cannot be computed (no units, no trade yet).
- account.royalties is the account's royalty statement: every part it received as a holder
  (payments) and every distribution it paid as a licensee (payments_made, net of the part it
  received back as a holder), from the instruments' royalty periods.
- A balance is shown as {available, held, kind}: units of an instrument as integers, cash as
  decimal strings of its currency. `balance_changes` names every (account, asset) that a
  batch's postings touched, from the journal records themselves, so a balance that changed
  is never left out of an update.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Collection, Sequence
from typing import Any, Literal

import msgspec

from exchange.calendar import NS_PER_DAY, trading_day
from exchange.core import Outcome
from exchange.events import OrderFilled
from exchange.state import ExchangeState, Instrument, RoyaltyPeriod
from gateway import protocol
from ledger.balances import Balances

FILLS_PER_ACCOUNT_MAX = 10_000
TTM_NS = 365 * NS_PER_DAY
PER_UNIT_EXTRA_DIGITS = 6
YIELD_DIGITS = 4


class FillLog:
    """Every fill of the trading day per account, from the durable outcomes (bounded)."""

    def __init__(self, next_seq: int, per_account_max: int = FILLS_PER_ACCOUNT_MAX) -> None:
        self.per_account_max = per_account_max
        self.complete_from_seq = next_seq
        self.day = -1
        self._fills: dict[str, deque[tuple[int, int, OrderFilled]]] = {}
        # Fills recorded per account, ever: the position of the newest (the pages' cursor).
        self._recorded: dict[str, int] = {}
        self._truncated: set[str] = set()

    def record(self, outcomes: Sequence[Outcome]) -> None:
        for outcome in outcomes:
            day = trading_day(outcome.ts_ns)
            if day != self.day:
                if self.day >= 0:  # A new day: yesterday's fills go (the journal keeps them).
                    self._fills.clear()
                    self._truncated.clear()
                    self.complete_from_seq = outcome.seq
                self.day = day
            for event in outcome.events:
                if event.__class__ is not OrderFilled:
                    continue
                assert isinstance(event, OrderFilled)
                fills = self._fills.get(event.account)
                if fills is None:
                    fills = self._fills[event.account] = deque(maxlen=self.per_account_max)
                if len(fills) == self.per_account_max:
                    self._truncated.add(event.account)
                fills.append((outcome.seq, outcome.ts_ns, event))
                self._recorded[event.account] = self._recorded.get(event.account, 0) + 1

    def view(
        self,
        state: ExchangeState,
        account: str,
        symbol: str,
        limit: int = protocol.PAGE_LIMIT_DEFAULT,
        after: int = 0,
    ) -> dict[str, Any]:
        """One page of the account's fills (in one symbol): at most limit, after position after."""
        kept = self._fills.get(account, deque())
        oldest = self._recorded.get(account, 0) - len(kept) + 1  # The position of kept[0].
        start = max(0, after + 1 - oldest)
        position = oldest + start - 1
        fills: list[dict[str, Any]] = []
        last = next_after = None
        for seq, ts_ns, event in itertools.islice(kept, start, None):
            position += 1
            if symbol and event.symbol != symbol:
                continue
            if len(fills) == limit:  # One more is kept: the page is not the last.
                next_after = last
                break
            last = position
            terms = state.instruments[event.symbol].terms
            fills.append(
                {
                    "seq": seq,
                    "ts_ns": ts_ns,
                    "symbol": event.symbol,
                    "order_id": event.order_id,
                    "cl_ord_id": event.cl_ord_id,
                    "trade_id": event.trade_id,
                    "side": event.side.value,
                    "price": protocol.ticks_to_price(
                        event.price_ticks, terms.currency, terms.tick_size_minor
                    ),
                    "quantity": event.quantity_units,
                    "liquidity": event.liquidity.value,
                    "fee": protocol.minor_to_amount(event.fee_minor, terms.currency),
                }
            )
        return {
            "account": account,
            "fills": fills,
            "complete_from_seq": self.complete_from_seq,
            "truncated": account in self._truncated,
            "next": next_after,
        }


def _decimal(value: int, digits: int) -> str:
    whole, fraction = divmod(value, 10**digits)
    return f"{whole}.{fraction:0{digits}d}" if digits else str(whole)


def trailing_royalties(instrument: Instrument, now_ts_ns: int) -> dict[str, Any]:
    """The instrument's TTM royalties: in total, per unit, and as a yield at the last price."""
    terms = instrument.terms
    currency = terms.currency
    ttm_minor = sum(
        period.amount_minor
        for period in instrument.royalties.values()
        if period.ts_ns > now_ts_ns - TTM_NS
    )
    digits = protocol.currency_digits(currency)
    # Per unit, in minor units scaled by 10**PER_UNIT_EXTRA_DIGITS, rounded down.
    per_unit = ttm_minor * 10**PER_UNIT_EXTRA_DIGITS // terms.total_units
    last_minor = instrument.last_price_ticks * terms.tick_size_minor
    yield_percent = None
    if last_minor:
        # ttm / (units * last price) * 100, with YIELD_DIGITS decimals, rounded down.
        scaled = ttm_minor * 100 * 10**YIELD_DIGITS // (terms.total_units * last_minor)
        yield_percent = _decimal(scaled, YIELD_DIGITS)
    return {
        "ttm_royalties": protocol.minor_to_amount(ttm_minor, currency),
        "ttm_royalties_per_unit": _decimal(per_unit, digits + PER_UNIT_EXTRA_DIGITS),
        "ttm_yield_percent_at_last_price": yield_percent,
        "distributions": len(instrument.royalties),
    }


def royalties_view(state: ExchangeState, balances: Balances, account: str) -> dict[str, Any]:
    """The account's royalty payments per period, received (payments) and made as a licensee
    (payments_made: the amount, the part of it paid back to the payer as a holder, and the
    net amount its cash went down by), and TTM figures of what it holds or held."""
    payments = []
    payments_made = []
    instruments = []
    for symbol, instrument in sorted(state.instruments.items()):
        currency = instrument.terms.currency
        received = False
        for period in instrument.royalties.values():
            if period.payer_account == account:
                payments_made.append(_payment_made(symbol, currency, period, account))
            payment = period.payments.get(account)
            if payment is None:
                continue
            received = True
            units, amount = payment
            payments.append(
                {
                    "symbol": symbol,
                    "period_id": period.period_id,
                    "seq": period.seq,
                    "ts_ns": period.ts_ns,
                    "units_held": units,
                    "total_units": period.total_units,
                    "amount": protocol.minor_to_amount(amount, currency),
                    "currency": currency,
                }
            )
        units_now = balances.available(account, symbol) + balances.held(account, symbol)
        if received or units_now:
            view = {"symbol": symbol, "units_held": units_now, "currency": currency}
            view.update(trailing_royalties(instrument, state.last_ts_ns))
            instruments.append(view)
    return {
        "account": account,
        "payments": payments,
        "payments_made": payments_made,
        "instruments": instruments,
    }


def _payment_made(
    symbol: str, currency: str, period: RoyaltyPeriod, account: str
) -> dict[str, Any]:
    own_share = period.payments.get(account, (0, 0))[1]
    return {
        "symbol": symbol,
        "period_id": period.period_id,
        "seq": period.seq,
        "ts_ns": period.ts_ns,
        "amount": protocol.minor_to_amount(period.amount_minor, currency),
        "own_share": protocol.minor_to_amount(own_share, currency),
        "net_amount": protocol.minor_to_amount(period.amount_minor - own_share, currency),
        "currency": currency,
    }


def instrument_info(state: ExchangeState, instrument: Instrument) -> dict[str, Any]:
    """Patent metadata, terms, phase, bands, last price and trailing royalties of one symbol."""
    terms = instrument.terms
    listing = instrument.asset.listing
    currency, tick = terms.currency, terms.tick_size_minor

    def price(ticks: int) -> str | None:
        return protocol.ticks_to_price(ticks, currency, tick) if ticks else None

    return {
        "symbol": terms.symbol,
        "patent": {
            "patent_id": listing.patent_id,
            "family": list(listing.family),
            "title": listing.title,
            "jurisdiction": listing.jurisdiction,
            "owner_account": listing.owner_account,
            "filing_date": listing.filing_date,
            "expiry_date": listing.expiry_date,
            "cpc_class": listing.cpc_class,
            "licensees": list(listing.licensees),
            "royalty_terms": listing.royalty_terms,
            "trailing_royalties_at_listing": protocol.minor_to_amount(
                listing.trailing_royalties_minor, listing.currency
            ),
        },
        "issuer_account": terms.issuer_account,
        "currency": currency,
        "total_units": terms.total_units,
        "tick_size": protocol.minor_to_amount(tick, currency),
        "lot_size_units": terms.lot_size_units,
        "maker_fee_bps": terms.maker_fee_bps,
        "taker_fee_bps": terms.taker_fee_bps,
        "trading_mode": terms.trading_mode.value,
        "phase": instrument.phase.value,
        "phase_until_ns": instrument.phase_until_ns,
        "reference_price": price(instrument.reference_price_ticks),
        "last_price": price(instrument.last_price_ticks),
        "static_band": [price(instrument.static_low), price(instrument.static_high)],
        "dynamic_band": [price(instrument.dynamic_low), price(instrument.dynamic_high)],
        "trade_count": instrument.trade_count,
        "volume_units": instrument.volume_units,
        "royalties": trailing_royalties(instrument, state.last_ts_ns),
    }


class Balance(msgspec.Struct, frozen=True):
    """One balance: units of an instrument (integers) or cash (decimal strings)."""

    available: int | str
    held: int | str
    kind: Literal["units", "cash"]


class BalancesPush(msgspec.Struct, frozen=True, tag_field="channel", tag="balances"):
    """The account's balances: every one (snapshot), or those a durable batch changed
    (update), absolute; seq and prev_seq count this session's balances messages."""

    type: Literal["snapshot", "update"]
    seq: int
    prev_seq: int
    journal_seq: int  # The last journal record the balances include.
    balances: dict[str, Balance]


def balance_view(asset: str, available: int, held: int, instruments: dict[str, Any]) -> Balance:
    """One balance as the wire shows it."""
    if asset in instruments:
        return Balance(available, held, "units")
    amount = protocol.minor_to_amount
    return Balance(amount(available, asset), amount(held, asset), "cash")


def balances_view(
    balances: Balances, instruments: dict[str, Any], account: str
) -> dict[str, Balance]:
    """Every balance of the account, by asset."""
    return {
        asset: balance_view(asset, available, held, instruments)
        for asset, available, held in balances.of_account(account)
    }


def balance_changes(
    outcomes: Sequence[Outcome], accounts: Collection[str]
) -> dict[str, tuple[int, dict[str, None]]]:
    """For each of these accounts that the outcomes' postings touched: the journal seq of the
    last record that did, and the assets touched (in the order first touched)."""
    changes: dict[str, tuple[int, dict[str, None]]] = {}
    for outcome in outcomes:
        for posting in outcome.record.postings:
            for account in (posting.debit_account, posting.credit_account):
                if account in accounts:
                    assets = changes[account][1] if account in changes else {}
                    assets[posting.asset] = None
                    changes[account] = (outcome.seq, assets)
    return changes
