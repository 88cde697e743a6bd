"""The driver of the exchange's rulebook: a clock, a small market, and its standing invariants.

Every scenario drives `Exchange.handle(command, ts_ns)` through `Market.do` and nothing else.
After every command the market checks what must hold whatever the scenario:

- conservation: per currency the internal balances sum to deposits - withdrawals; per
  instrument they sum to the units issued;
- no internal balance, available or held, is negative; world accounts hold nothing;
- held balances equal what the open orders need, recomputed from the books alone: a buy holds
  price x tick x leaves plus the larger of the maker and taker fee on that, rounded down; a
  sell holds its leaves;
- every live order of every book is in `state.orders` and in its account's `open_orders`, and
  nothing else is; its filled units and quantity agree with the exchange's record of it;
- each account's execution_seq counts the private events it has had (its execution reports).

`checked_market()` (the `market` fixture of each test module) also replays the whole journal
into a fresh exchange at the end of the test: every record must give back its postings, and
the balances must come out equal.

The standard market: an operator, an issuer, four investors with 10,000,000 minor units
(USD 100,000.00) each and a licensee who pays royalties; the patent US10123456B2 owned by the
issuer; its share class RS-US10123456B2 of 100,000 units, tick 10 minor units, lot 1, maker
fee 10 bps, taker fee 25 bps, reference price 1,000 ticks, static band 10% ([900, 1100]),
dynamic band 5% ([950, 1050] around the last price).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec

from exchange.admin import AMOUNT_MINOR_MAX
from exchange.calendar import NS_PER_SECOND, parse_date
from exchange.commands import (
    AmendOrder,
    CancelOrder,
    Command,
    Deposit,
    Halt,
    IssueShares,
    ListAsset,
    OpenAccount,
    OpenOffering,
    PlaceOrder,
    Resume,
    Role,
    Tick,
    TradingMode,
)
from exchange.core import ADMIN_ACTOR, Exchange, Outcome
from exchange.events import (
    PRIVATE_EVENTS,
    CashDeposited,
    CashWithdrawn,
    CommandRejected,
    Event,
    OrderAccepted,
    OrderRejected,
    Phase,
    SharesIssued,
)
from exchange.reasons import Reject
from exchange.state import FEE_ACCOUNT, SEQUENCER_ACTOR, Instrument
from ledger.records import BALANCE_MAX, BANK_ACCOUNT, GENESIS_HASH, WORLD_PREFIX, RecordBody, seal
from matching.orders import OrderType, Side, StpMode, TimeInForce
from matching.views import OrderView

SECOND = NS_PER_SECOND
HOUR = 3_600 * SECOND
START_TS_NS = parse_date("2030-01-15") + 9 * HOUR  # 09:00 UTC, far from a day roll.

OPERATOR = "op"
ISSUER = "issuer"
INVESTORS = ("alice", "bob", "carol", "dave")
LICENSEE = "lic"
FEES = FEE_ACCOUNT
CASH = 10_000_000  # Each investor's and the licensee's deposit, in minor units.

PATENT = "US10123456B2"
PATENT_EXPIRY = "2035-03-01"
SYMBOL = "RS-US10123456B2"
USD = "USD"
TOTAL_UNITS = 100_000
TICK_MINOR = 10
MAKER_BPS = 10
TAKER_BPS = 25
REFERENCE = 1_000
STATIC_BAND_BPS = 1_000
DYNAMIC_BAND_BPS = 500
VOLATILITY_AUCTION_NS = 60 * SECOND
OPENING_AUCTION_NS = 30 * SECOND

BUY = Side.BUY
SELL = Side.SELL
LIMIT = OrderType.LIMIT
MARKET = OrderType.MARKET
GTC = TimeInForce.GTC
IOC = TimeInForce.IOC
FOK = TimeInForce.FOK
GTD = TimeInForce.GTD
DAY = TimeInForce.DAY


def listing(patent_id: str = PATENT, **changes: Any) -> ListAsset:
    """Return a valid ListAsset of a patent owned by the issuer, with some fields changed."""
    command = ListAsset(
        OPERATOR,
        patent_id,
        "Method for verifying royalty streams",
        "US",
        ISSUER,
        "2015-03-01",
        PATENT_EXPIRY,
        "H04L 9/32",
        ("Acme Corp",),
        "3% of net sales",
        USD,
        120_000,
    )
    return msgspec.structs.replace(command, **changes)


def issuance(symbol: str = SYMBOL, patent_id: str = PATENT, **changes: Any) -> IssueShares:
    """Return a valid IssueShares of the standard terms, with some fields changed."""
    command = IssueShares(
        OPERATOR,
        patent_id,
        symbol,
        ISSUER,
        TOTAL_UNITS,
        USD,
        TICK_MINOR,
        1,
        MAKER_BPS,
        TAKER_BPS,
        REFERENCE,
        STATIC_BAND_BPS,
        DYNAMIC_BAND_BPS,
        VOLATILITY_AUCTION_NS,
        OPENING_AUCTION_NS,
        TradingMode.CONTINUOUS,
        0,
    )
    return msgspec.structs.replace(command, **changes)


def buy_need(price_ticks: int, quantity_units: int, fee_bps: int = TAKER_BPS) -> int:
    """Return what a buy holds: notional at its limit plus fee_bps of it, rounded down."""
    notional = price_ticks * TICK_MINOR * quantity_units
    return notional + notional * fee_bps // 10_000


def fee(price_ticks: int, quantity_units: int, fee_bps: int) -> int:
    """Return the fee on one trade, rounded down to the minor unit."""
    return price_ticks * TICK_MINOR * quantity_units * fee_bps // 10_000


class Market:
    """One exchange, its clock, and what the test knows must hold of it."""

    def __init__(self) -> None:
        self.exchange = Exchange()
        self.ts_ns = START_TS_NS
        self.records: list[RecordBody] = []
        self.outside: dict[str, int] = {}  # Per asset: deposited - withdrawn, or issued.
        self.reports: dict[str, int] = {}  # Per account: the private events it has had.
        self._next_cl = 0

    # Driving the exchange.

    def do(self, command: Command, after_ns: int = 1) -> Outcome:
        """Let after_ns pass, handle one command, check the invariants; return its outcome."""
        self.ts_ns += after_ns
        outcome = self.exchange.handle(command, self.ts_ns)
        self.records.append(outcome.record)
        for event in outcome.events:
            if isinstance(event, CashDeposited):
                self._count(event.currency, event.amount_minor)
            elif isinstance(event, CashWithdrawn):
                self._count(event.currency, -event.amount_minor)
            elif isinstance(event, SharesIssued):
                self._count(event.symbol, event.total_units)
            if type(event) in PRIVATE_EVENTS:
                account = getattr(event, "account")  # noqa: B009  # mypy: Event has no .account
                self.reports[account] = self.reports.get(account, 0) + 1
        self.check()
        return outcome

    def tick(self, after_ns: int = 1) -> Outcome:
        """Let time pass with nothing but the clock: timers due by then fire."""
        return self.do(Tick(SEQUENCER_ACTOR), after_ns)

    def tick_to(self, ts_ns: int) -> Outcome:
        """Let time pass up to exactly ts_ns."""
        assert ts_ns > self.ts_ns, "the clock only moves forwards"
        return self.tick(ts_ns - self.ts_ns)

    def refused(self, command: Command, reason: Reject, words: str = "") -> Outcome:
        """Handle a command that must be rejected for reason and change nothing."""
        before = self.fingerprint()
        outcome = self.do(command)
        rejected(outcome, reason, words)
        assert outcome.record.postings == (), f"a rejected {command!r} made postings"
        assert self.fingerprint() == before, f"a rejected {command!r} changed the exchange"
        return outcome

    # Setting up.

    def accounts(self) -> Market:
        """Open the standard accounts and fund the investors and the licensee."""
        self.do(OpenAccount(ADMIN_ACTOR, OPERATOR, Role.OPERATOR))
        self.do(OpenAccount(OPERATOR, ISSUER, Role.ISSUER))
        for account in (*INVESTORS, LICENSEE):
            self.do(OpenAccount(OPERATOR, account, Role.INVESTOR))
            self.do(Deposit(OPERATOR, account, USD, CASH))
        return self

    def open_account(self, account: str, cash: int = 0, role: Role = Role.INVESTOR) -> None:
        accepted_reply(self.do(OpenAccount(OPERATOR, account, role)))
        if cash:
            accepted_reply(self.do(Deposit(OPERATOR, account, USD, cash)))

    def fund_to_the_limit(self, account: str, currency: str = USD) -> None:
        """Deposit into account until the cash outstanding in currency is exactly BALANCE_MAX.

        Each deposit is at most AMOUNT_MINOR_MAX: about 4,600 of them.
        """
        bank = self.exchange.balances.available(BANK_ACCOUNT, currency)
        full, rest = divmod(BALANCE_MAX + bank, AMOUNT_MINOR_MAX)
        for amount in (*(AMOUNT_MINOR_MAX,) * full, rest):
            if amount:
                accepted_reply(self.do(Deposit(OPERATOR, account, currency, amount)))
        assert self.exchange.balances.available(BANK_ACCOUNT, currency) == -BALANCE_MAX

    def pre_open(self, **terms: Any) -> Market:
        """The standard accounts, the patent listed, its shares issued: phase pre_open."""
        self.accounts()
        accepted_reply(self.do(listing()))
        accepted_reply(self.do(issuance(**terms)))
        return self

    def trading(self, **terms: Any) -> Market:
        """pre_open, then Resume and the (empty) opening auction: phase continuous."""
        self.pre_open(**terms)
        self.open_trading(SYMBOL)
        return self

    def open_trading(self, symbol: str = SYMBOL) -> None:
        """Resume an instrument and let its opening auction end."""
        accepted_reply(self.do(Resume(OPERATOR, symbol)))
        self.tick_to(self.instrument(symbol).phase_until_ns)

    def halt(self, symbol: str = SYMBOL) -> Outcome:
        return accepted_reply(self.do(Halt(OPERATOR, symbol)))

    def offering(
        self, units: int, min_price: int, *, all_or_none: bool = False, lasts_ns: int = HOUR
    ) -> Outcome:
        """Open an offering of the issuer's units on the pre-open standard instrument."""
        end = self.ts_ns + 1 + lasts_ns
        return accepted_reply(
            self.do(OpenOffering(OPERATOR, SYMBOL, units, min_price, end, all_or_none))
        )

    def give_units(self, account: str, units: int, price: int = REFERENCE) -> None:
        """Let an account buy units from the issuer in continuous trading."""
        self.sell(ISSUER, units, price)
        filled = self.buy(account, units, price)
        assert self.units(account)[0] >= units, f"{account} did not get its units: {filled}"

    # Orders.

    def order(
        self,
        account: str,
        side: Side,
        quantity: int,
        price: int = 0,
        *,
        symbol: str = SYMBOL,
        cl: str | None = None,
        order_type: OrderType = LIMIT,
        tif: TimeInForce = GTC,
        post_only: bool = False,
        stp: StpMode = StpMode.EXPIRE_TAKER,
        expire_ts_ns: int = 0,
        session: str = "",
    ) -> PlaceOrder:
        """Return a PlaceOrder command (a fresh cl_ord_id unless one is given)."""
        if cl is None:
            self._next_cl += 1
            cl = f"c{self._next_cl}"
        return PlaceOrder(
            account,
            symbol,
            cl,
            side,
            order_type,
            tif,
            price,
            quantity,
            post_only,
            stp,
            expire_ts_ns,
            session,
        )

    def buy(self, account: str, quantity: int, price: int, **options: Any) -> Outcome:
        return self.do(self.order(account, BUY, quantity, price, **options))

    def sell(self, account: str, quantity: int, price: int, **options: Any) -> Outcome:
        return self.do(self.order(account, SELL, quantity, price, **options))

    def market_buy(self, account: str, quantity: int, tif: TimeInForce = IOC) -> Outcome:
        return self.do(self.order(account, BUY, quantity, order_type=MARKET, tif=tif))

    def market_sell(self, account: str, quantity: int, tif: TimeInForce = IOC) -> Outcome:
        return self.do(self.order(account, SELL, quantity, order_type=MARKET, tif=tif))

    def rest(self, account: str, side: Side, quantity: int, price: int, **options: Any) -> int:
        """Place an order that must be accepted and rest whole; return its order id."""
        order_id = accepted(self.do(self.order(account, side, quantity, price, **options)))
        view = self.book_order(order_id, options.get("symbol", SYMBOL))
        assert view is not None and view.leaves_units == quantity, f"order {order_id} traded"
        return order_id

    def cancel(self, account: str, order_id: int = 0, cl: str = "") -> Outcome:
        return self.do(CancelOrder(account, order_id, cl))

    def amend(self, account: str, order_id: int, quantity: int, price: int) -> Outcome:
        return self.do(AmendOrder(account, price, quantity, order_id))

    # Reading the exchange.

    def cash(self, account: str, currency: str = USD) -> tuple[int, int]:
        """Return (available, held) cash of an account."""
        balances = self.exchange.balances
        return balances.available(account, currency), balances.held(account, currency)

    def units(self, account: str, symbol: str = SYMBOL) -> tuple[int, int]:
        """Return (available, held) units of an account."""
        balances = self.exchange.balances
        return balances.available(account, symbol), balances.held(account, symbol)

    def instrument(self, symbol: str = SYMBOL) -> Instrument:
        return self.exchange.state.instruments[symbol]

    def phase(self, symbol: str = SYMBOL) -> Phase:
        return self.instrument(symbol).phase

    def book_order(self, order_id: int, symbol: str = SYMBOL) -> OrderView | None:
        return self.instrument(symbol).book.order(order_id)

    def open_orders(self, account: str) -> list[int]:
        return list(self.exchange.state.accounts[account].open_orders)

    def fingerprint(self) -> object:
        """Everything a rejected command must leave as it was (idempotency memory aside)."""
        state = self.exchange.state
        return (
            list(self.exchange.balances.entries()),
            [
                (account.account_id, account.role, account.suspended, list(account.open_orders))
                for account in state.accounts.values()
            ],
            list(state.assets),
            [
                (
                    symbol,
                    instrument.phase,
                    instrument.phase_until_ns,
                    instrument.reference_price_ticks,
                    instrument.last_price_ticks,
                    instrument.book.state_hash(),
                    list(instrument.royalties),
                    instrument.offering,
                )
                for symbol, instrument in state.instruments.items()
            ],
            [
                (order.order_id, order.cum_units, order.price_ticks)
                for order in state.orders.values()
            ],
        )

    # The invariants.

    def check(self) -> None:
        """Check conservation, non-negativity, reservations and order bookkeeping."""
        balances = self.exchange.balances
        expected = {asset: total for asset, total in sorted(self.outside.items()) if total}
        assert balances.totals() == expected, "value was created or destroyed"
        need = self._reservations_needed()
        for account, asset, available, held in balances.entries():
            if account.startswith(WORLD_PREFIX):
                assert held == 0, f"world account {account} holds {held} {asset}"
                continue
            assert available >= 0 and held >= 0, f"{account} {asset}: {available}/{held}"
            needed = need.pop((account, asset), 0)
            assert held == needed, f"{account} holds {held} {asset}, its orders need {needed}"
        assert not need, f"open orders need reservations that are not held: {need}"
        for owner, record in self.exchange.state.accounts.items():
            reports = self.reports.get(owner, 0)
            assert record.execution_seq == reports, f"{owner} had {reports} reports"
        self._check_sessions()

    def _check_sessions(self) -> None:
        # Sessions are kept exactly while they have an open order or a cancel scope, and each
        # open order placed through one is that session's and its account's.
        state = self.exchange.state
        placed = {}
        for session_id, session in state.sessions.items():
            assert session.open_orders or session.cancel_scope, f"{session_id} kept for nothing"
            for order_id in session.open_orders:
                order = state.orders.get(order_id)
                assert order is not None, f"session {session_id} holds finished order {order_id}"
                assert order.account == session.account, f"{session_id} has another's order"
                placed[order_id] = session_id
        assert state.order_sessions == placed, "order_sessions and sessions disagree"

    def _reservations_needed(self) -> dict[tuple[str, str], int]:
        state = self.exchange.state
        need: dict[tuple[str, str], int] = {}
        live: set[int] = set()
        for symbol, instrument in state.instruments.items():
            terms = instrument.terms
            max_fee_bps = max(terms.maker_fee_bps, terms.taker_fee_bps)
            bids, asks = instrument.book.l3()
            for view in (*bids, *asks):
                live.add(view.order_id)
                order = state.orders.get(view.order_id)
                assert order is not None, f"book order {view.order_id} unknown to the exchange"
                assert (order.account, order.side) == (view.owner, view.side)
                assert order.cum_units == view.filled_units, f"order {view.order_id} fills"
                assert order.quantity_units == view.quantity_units
                assert view.order_id in state.accounts[view.owner].open_orders
                if view.side is BUY:
                    notional = view.price_ticks * terms.tick_size_minor * view.leaves_units
                    key = (view.owner, terms.currency)
                    amount = notional + notional * max_fee_bps // 10_000
                else:
                    key, amount = (view.owner, symbol), view.leaves_units
                need[key] = need.get(key, 0) + amount
        assert set(state.orders) == live, "open orders and book orders differ"
        assert sum(len(account.open_orders) for account in state.accounts.values()) == len(live)
        return need

    def replay_check(self) -> None:
        """Replay the journal into a fresh exchange: same postings, same balances."""
        records = []
        previous = GENESIS_HASH
        for body in self.records:
            record = seal(previous, body)
            records.append(record)
            previous = record.hash
        fresh = Exchange()
        assert fresh.replay(records) == len(records)
        assert list(fresh.balances.entries()) == list(self.exchange.balances.entries())

    def _count(self, asset: str, amount: int) -> None:
        self.outside[asset] = self.outside.get(asset, 0) + amount


def checked_market() -> Iterator[Market]:
    """Yield a fresh market; at the end check its invariants and replay its journal."""
    market = Market()
    yield market
    market.check()
    market.replay_check()


# Assertions on outcomes.


def accepted(outcome: Outcome) -> int:
    """Assert the reply accepted an order; return its order id."""
    reply = outcome.reply
    assert isinstance(reply, OrderAccepted), f"expected an acceptance, got {reply!r}"
    return reply.order_id


def accepted_reply(outcome: Outcome) -> Outcome:
    """Assert the command was not rejected; return the outcome."""
    reply = outcome.reply
    assert not isinstance(reply, CommandRejected | OrderRejected), f"rejected: {reply!r}"
    return outcome


def rejected(outcome: Outcome, reason: Reject, words: str = "") -> None:
    """Assert the reply is a rejection for reason (its message containing words)."""
    reply = outcome.reply
    assert isinstance(reply, CommandRejected | OrderRejected), f"not rejected: {reply!r}"
    assert reply.reason is reason, f"expected {reason.value}, got {reply!r}"
    assert words in reply.message, f"{words!r} is not in {reply.message!r}"


def events(outcome: Outcome, kind: type[Event]) -> list[Any]:
    """Return the outcome's events of one kind, in order."""
    return [event for event in outcome.events if isinstance(event, kind)]


def no_postings(outcome: Outcome) -> bool:
    return outcome.record.postings == ()
