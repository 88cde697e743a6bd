"""Order entry, amendment and cancellation, with pre-trade risk and delivery-versus-payment.

Invariants:
- Pre-trade risk by reservation: an open buy order holds buy_reservation_minor(limit price,
  leaves) in cash; an open sell order holds its leaves in units. Every fill, cancel, STP
  reduction and amend moves exactly the difference, so held balances always equal what the
  open orders need.
- A trade settles in the same record as the match: units from the seller's held balance to
  the buyer, cash from the buyer's held balance to the seller, each side's fee to FEE_ACCOUNT,
  and the buyer's now-unneeded reservation back to available.
- An account can only cancel, amend or query its own orders; someone else's order id is
  answered exactly like an id that does not exist (UNKNOWN_ORDER).
- A business rejection changes nothing, except one documented case: an order that would trade
  through the dynamic band starts a volatility auction even when it is itself rejected.

Precedence of PlaceOrder rejections (the first failing check wins). Over the wire the gateway
first turns a request into a command, and refuses what it cannot turn: a malformed request
(VALIDATION_ERROR), an unknown symbol (UNKNOWN_SYMBOL: it needs the symbol's tick), a market
order with a price or a limit order without one (VALIDATION_ERROR), a price that is not a
whole number of ticks (INVALID_PRICE_INCREMENT). Those come before every check below, and a
request refused there is not a command: nothing is journaled and no cl_ord_id is taken.
 0. idempotency: the same command again (the same cl_ord_id of the day, or of an order that
    ended on the previous trading day) returns the first outcome, before any check, so a
    resend is answered alike after a suspension, or after the day roll, too. An order is
    forgotten at the second day roll after it ended: the same command then is a new order.
 1. FORBIDDEN (unknown actor, or an operator account) / ACCOUNT_SUSPENDED (kill switch)
 2. VALIDATION_ERROR: cl_ord_id empty or longer than CL_ORD_ID_LENGTH_MAX, or a session_id
    longer than SESSION_ID_LENGTH_MAX
 3. DUPLICATE_CL_ORD_ID: the cl_ord_id was used today for a different command (or by an
    order still open from an earlier day); a different command under the cl_ord_id of an
    order that ended yesterday is a new order, which takes the id for today (a resend of
    yesterday's order is still answered as yesterday's, by step 0)
 3a. LIMIT_EXCEEDED: the account has placed ORDERS_PER_ACCOUNT_PER_DAY_MAX orders today (not
     remembered: its resend is refused the same way), or already has
     OPEN_ORDERS_PER_ACCOUNT_MAX open orders
 4. UNKNOWN_SYMBOL
 5. MARKET_CLOSED (closed, delisted) / TRADING_HALTED (halted)
 5a. NOT_ALLOWED_IN_AUCTION: an IOC order (market or limit) while pre-open, where no uncross
    is scheduled
 6. VALIDATION_ERROR: a sell in an offering, a bid of its issuer, or a market bid in it; a
    market order with a price; post-only with IOC/FOK or market; market with GTC/GTD/DAY;
    GTD without a future expiry, or one past TS_NS_MAX (2**63 - 1); expiry without GTD
 7. INVALID_QUANTITY: quantity < 1, above the book limit, or not a multiple of the lot size
 8. PRICE_BAND: a limit price <= 0, outside the static band, or below an offering's minimum
 9. INSUFFICIENT_BALANCE (buy) / INSUFFICIENT_SHARES (sell)
10. PRICE_BAND with a volatility auction: an IOC/FOK limit order that would trade through the
    dynamic band (other orders join the auction that their arrival started; a post-only order
    never trades on arrival, so it starts no auction and the book's check 11 refuses it)
11. the book's own checks: NOT_ALLOWED_IN_AUCTION, LIMIT_EXCEEDED, POST_ONLY_WOULD_TRADE,
    FOK_NOT_FILLABLE (see matching/book.py)
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from exchange.calendar import TS_NS_MAX
from exchange.commands import AmendOrder, CancelAll, CancelOrder, PlaceOrder, Role
from exchange.context import Context
from exchange.currencies import cash_text, price_text
from exchange.events import (
    AllOrdersCanceled,
    AuctionUncrossed,
    CommandRejected,
    Event,
    Liquidity,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
    Phase,
    TradeExecuted,
)
from exchange.money import BPS_DENOMINATOR, buy_reservation_minor
from exchange.phases import start_auction
from exchange.reasons import Reject
from exchange.state import (
    FEE_ACCOUNT,
    Account,
    ClientOrder,
    ExchangeState,
    GatewaySession,
    Instrument,
    LiveOrder,
)
from matching import events as book_events
from matching.limits import QUANTITY_UNITS_MAX
from matching.orders import CancelReason, OrderType, RejectReason, Side, StpMode, TimeInForce

CL_ORD_ID_LENGTH_MAX = 36
SESSION_ID_LENGTH_MAX = 64
# Open orders per account. It bounds what one command may have to cancel (CancelAll, the kill
# switch, the end of a session with cancel-on-disconnect) to one journal record of about
# 3.5 MB, well inside a frame (ledger/frames.py: FRAME_PAYLOAD_BYTES_MAX, 16 MiB; ~35 bytes a
# canceled order). Without it, a session's end over ~480,000 orders could not be journaled,
# and a restart, which must end that session first, could never complete.
OPEN_ORDERS_PER_ACCOUNT_MAX = 100_000
# The orders an account may place in a trading day, refused ones included. Each is remembered
# until the day after next (resends and status queries: ExchangeState.client_orders), about
# 0.5 KB of memory and 0.3 KB of snapshot each: without a bound, an account placing and
# canceling at the gateway's rate limit (500/s) all day grew the exchange by ~20 GB a day.
# Half a million (~250 MB a day at most) is 17 minutes at that rate, and 400 orders a minute
# over a 24-hour day: a market maker re-quotes with order.amend, which does not count.
ORDERS_PER_ACCOUNT_PER_DAY_MAX = 500_000
OFFERING_CL_ORD_ID = "offering"  # The issuer's sell order in an offering auction.

_BUY = Side.BUY
_SELL = Side.SELL
_MAKER = Liquidity.MAKER
_TAKER = Liquidity.TAKER
_AUCTION = Liquidity.AUCTION
_MARKET = OrderType.MARKET
_LIMIT = OrderType.LIMIT
_GTC = TimeInForce.GTC
_GTD = TimeInForce.GTD
_IOC = TimeInForce.IOC
_USER = CancelReason.USER
_EXPIRE_MAKER = StpMode.EXPIRE_MAKER
_NO_UNITS: dict[int, int] = {}  # Read only: no own orders to leave out.
_OPERATOR = Role.OPERATOR
_BOOK_REJECTED = book_events.OrderRejected
_BOOK_FILLED = book_events.OrderFilled
_BOOK_CANCELED = book_events.OrderCanceled
_BOOK_ACCEPTED = book_events.OrderAccepted
_CONTINUOUS = Phase.CONTINUOUS
_OFFERING = Phase.OFFERING
_PRE_OPEN = Phase.PRE_OPEN
_CLOSED_PHASES = (Phase.CLOSED, Phase.DELISTED)
_BOOK_REJECTS: dict[RejectReason, Reject] = {
    RejectReason.VALIDATION_ERROR: Reject.VALIDATION_ERROR,
    RejectReason.INVALID_PRICE: Reject.PRICE_BAND,
    RejectReason.INVALID_QUANTITY: Reject.INVALID_QUANTITY,
    RejectReason.DUPLICATE_ORDER_ID: Reject.VALIDATION_ERROR,
    RejectReason.UNKNOWN_ORDER: Reject.UNKNOWN_ORDER,
    RejectReason.POST_ONLY_WOULD_TRADE: Reject.POST_ONLY_WOULD_TRADE,
    RejectReason.FOK_NOT_FILLABLE: Reject.FOK_NOT_FILLABLE,
    RejectReason.NOT_ALLOWED_IN_AUCTION: Reject.NOT_ALLOWED_IN_AUCTION,
    RejectReason.TOO_MANY_ORDERS: Reject.LIMIT_EXCEEDED,
    RejectReason.TOO_MANY_PRICE_LEVELS: Reject.LIMIT_EXCEEDED,
}


class Rejection(Exception):
    """A business rejection found while checking a command (caught in this module)."""

    def __init__(self, reason: Reject, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def protection_price(instrument: Instrument, side: Side) -> int:
    """Return the price a market order may not trade beyond: the static band's edge."""
    return instrument.static_high if side is _BUY else instrument.static_low


def reservation_of(order: LiveOrder, leaves_units: int, price_ticks: int = 0) -> int:
    """Return what an open order with leaves_units must hold (cash for buys, units for sells).

    A buy is priced at its limit, or at price_ticks when given (what an amend would need).
    """
    if order.side is _BUY:
        instrument = order.instrument
        return buy_reservation_minor(
            price_ticks or order.price_ticks,
            instrument.terms.tick_size_minor,
            leaves_units,
            instrument.max_fee_bps,
        )
    return leaves_units


def reserved_asset(order: LiveOrder) -> str:
    terms = order.instrument.terms
    return terms.currency if order.side is _BUY else terms.symbol


# Placing an order.


def place_order(state: ExchangeState, ctx: Context, command: PlaceOrder) -> Event:
    """Check, reserve and match a new order; return the reply for its sender."""
    actor = command.actor
    cl_ord_id = command.cl_ord_id
    key = (actor, cl_ord_id)
    client_orders = state.client_orders
    previous = client_orders.get(key)
    if previous is not None and (
        previous.command == command or _same_order(previous.command, command)
    ):
        # A resend gets the first outcome whatever happened since: an order that traded
        # before its account was suspended still traded, and its sender must hear so.
        return previous.reply
    yesterdays = state.client_orders_yesterday.get(key)
    if yesterdays is not None and (
        yesterdays.command == command or _same_order(yesterdays.command, command)
    ):
        # A resend that straddles the day roll is a resend all the same (ExchangeState).
        return yesterdays.reply
    account = state.accounts.get(actor)
    if account is None or account.role is _OPERATOR or account.suspended:
        refusal = _actor_refusal(actor, account)
        # Not remembered: nobody who may trade sent it, so there is nothing to be idempotent about.
        return _order_rejected(ctx, account, command, refusal.reason, refusal.message)
    if not 0 < len(cl_ord_id) <= CL_ORD_ID_LENGTH_MAX:
        return _order_rejected(
            ctx,
            account,
            command,
            Reject.VALIDATION_ERROR,
            f"cl_ord_id must have 1 to {CL_ORD_ID_LENGTH_MAX} characters",
        )
    if len(command.session_id) > SESSION_ID_LENGTH_MAX:  # One no EndSession could name.
        return _order_rejected(
            ctx,
            account,
            command,
            Reject.VALIDATION_ERROR,
            f"session_id must have at most {SESSION_ID_LENGTH_MAX} characters",
        )
    if previous is not None:
        return _order_rejected(
            ctx,
            account,
            command,
            Reject.DUPLICATE_CL_ORD_ID,
            f"cl_ord_id {cl_ord_id!r} was already used today for another order",
        )
    if account.orders_today >= ORDERS_PER_ACCOUNT_PER_DAY_MAX:
        # Not remembered: remembering is what the bound bounds.
        return _order_rejected(
            ctx,
            account,
            command,
            Reject.LIMIT_EXCEEDED,
            f"the account has placed {ORDERS_PER_ACCOUNT_PER_DAY_MAX} orders today, the most "
            "it may in a trading day",
        )
    account.orders_today += 1  # Every way on from here remembers it in client_orders.
    try:
        if len(account.open_orders) >= OPEN_ORDERS_PER_ACCOUNT_MAX:
            raise Rejection(
                Reject.LIMIT_EXCEEDED,
                f"the account has {OPEN_ORDERS_PER_ACCOUNT_MAX} open orders, the most it may",
            )
        instrument, price_ticks, asset, reservation = _check_new_order(state, ctx, command)
    except Rejection as rejection:
        reply = _order_rejected(ctx, account, command, rejection.reason, rejection.message)
        client_orders[key] = ClientOrder(command, 0, reply)
        return reply
    order_id = state.next_order_id
    state.next_order_id = order_id + 1
    side = command.side
    quantity = command.quantity_units
    order_type = command.order_type
    time_in_force = command.time_in_force
    book_result = instrument.book.place(
        order_id,
        actor,
        side,
        price_ticks,
        quantity,
        order_type,
        time_in_force,
        command.post_only,
        command.stp_mode,
        command.expire_ts_ns,
    )
    first = book_result[0]
    if first.__class__ is _BOOK_REJECTED:
        reason = _BOOK_REJECTS[first.reason]
        reply = _order_rejected(ctx, account, command, reason, first.message, order_id)
        client_orders[key] = ClientOrder(command, order_id, reply)
        state.rejected_orders[order_id] = key
        return reply
    state.orders[order_id] = LiveOrder(
        order_id,
        actor,
        instrument,
        cl_ord_id,
        side,
        order_type,
        time_in_force,
        price_ticks,
        quantity,
    )
    account.open_orders[order_id] = None
    if command.session_id:
        _note_session_order(state, actor, command.session_id, order_id)
    if time_in_force is _GTD:
        ctx.timers_changed = True
    ctx.postings.append(ctx.balances.hold(actor, asset, reservation))
    reply = apply_book_events(state, ctx, instrument, book_result)
    fills = ctx.taker_fills  # A resend is answered with these too (its outcome has none).
    client_orders[key] = ClientOrder(command, order_id, reply, tuple(fills) if fills else ())
    return reply


def _same_order(first: PlaceOrder, again: PlaceOrder) -> bool:
    # A resend through another gateway session (a reconnect) is the same order: the session
    # only says whose end may cancel it, and that stays the first one's.
    return first.session_id != again.session_id and first == msgspec.structs.replace(
        again, session_id=first.session_id
    )


def _note_session_order(state: ExchangeState, account: str, session_id: str, order_id: int) -> None:
    # The order was placed through this gateway session: its end may cancel it
    # (exchange/disconnect.py). A session id is the gateway's, never another account's.
    session = state.sessions.get(session_id)
    if session is None:
        session = state.sessions[session_id] = GatewaySession(account)
    elif session.account != account:
        return
    session.open_orders[order_id] = None
    state.order_sessions[order_id] = session_id


def forget_session_order(state: ExchangeState, order_id: int) -> None:
    """An order left the book: its session no longer has it (nor is kept for it alone)."""
    session_id = state.order_sessions.pop(order_id, None)
    if session_id is None:
        return
    session = state.sessions[session_id]
    del session.open_orders[order_id]
    if not session.open_orders and not session.cancel_scope:
        del state.sessions[session_id]


def report(state: ExchangeState, ctx: Context, account_id: str, event: Event) -> None:
    """Emit a private event and number it in its account's execution reports (if it has one).

    The order events on the hot path count inline instead (apply_book_events, _settle_fill).
    """
    ctx.events.append(event)
    account = state.accounts.get(account_id)
    if account is not None:
        account.execution_seq += 1


def _actor_refusal(actor: str, account: Account | None) -> Rejection:
    if account is None or account.role is _OPERATOR:
        return Rejection(Reject.FORBIDDEN, f"account {actor!r} may not place orders")
    return Rejection(Reject.ACCOUNT_SUSPENDED, f"account {actor!r} is suspended")


def _check_new_order(
    state: ExchangeState, ctx: Context, command: PlaceOrder
) -> tuple[Instrument, int, str, int]:
    """Run checks 4-10 of the precedence; return the instrument, the order's price, and what
    it must reserve (the asset and the amount)."""
    instrument = state.instruments.get(command.symbol)
    if instrument is None:
        raise Rejection(Reject.UNKNOWN_SYMBOL, f"no instrument {command.symbol!r}")
    # Each check has a one-comparison fast path for the common case (a plain GTC limit order in
    # continuous trading); the full check, with its message, runs only when that fails.
    phase = instrument.phase
    continuous = phase is _CONTINUOUS
    if not continuous:
        _check_phase_allows_entry(instrument)
        if phase is _PRE_OPEN and command.time_in_force is _IOC:
            # The book takes a market IOC in a call phase and cancels what is left at the
            # uncross; pre-open has none scheduled, so it would rest (and hold) for days.
            raise Rejection(
                Reject.NOT_ALLOWED_IN_AUCTION,
                f"{command.symbol} is pre-open, with no uncross scheduled: "
                "an IOC order cannot wait for one",
            )
    order_type = command.order_type
    if (
        order_type is not _LIMIT
        or command.time_in_force is not _GTC
        or command.post_only
        or command.expire_ts_ns
        or phase is _OFFERING
    ):
        _check_order_shape(instrument, command, ctx.ts_ns)
    terms = instrument.terms
    quantity = command.quantity_units
    if not 0 < quantity <= QUANTITY_UNITS_MAX or quantity % terms.lot_size_units:
        _check_quantity(instrument, quantity)
    side = command.side
    if order_type is _MARKET:
        price_ticks = instrument.static_high if side is _BUY else instrument.static_low
    else:
        price_ticks = command.price_ticks
        if not instrument.static_low <= price_ticks <= instrument.static_high or not continuous:
            _check_price(instrument, price_ticks)
    # Funds: a buy holds its notional at its limit plus the maximum fee, a sell its units.
    if side is _BUY:
        asset = terms.currency
        notional = price_ticks * terms.tick_size_minor * quantity
        reservation = notional + notional * instrument.max_fee_bps // BPS_DENOMINATOR
    else:
        asset = terms.symbol
        reservation = quantity
    available = ctx.balances.available(command.actor, asset)
    if reservation > available:
        raise _short_of_funds(side, asset, reservation, available)
    # A post-only order never takes, so it cannot trade through the band: the book refuses it.
    if (
        continuous
        and not command.post_only
        and _would_trade_through(
            state, instrument, command.actor, side, price_ticks, quantity, command.stp_mode
        )
    ):
        start_auction(ctx, instrument, "volatility", terms.volatility_auction_ns)
        tif = command.time_in_force
        if tif is TimeInForce.FOK or (tif is TimeInForce.IOC and order_type is not _MARKET):
            raise Rejection(
                Reject.PRICE_BAND,
                f"an order at {_price(instrument, price_ticks)} would trade through the "
                "dynamic band: a volatility auction has started",
            )
    return instrument, price_ticks, asset, reservation


def _short_of_funds(side: Side, asset: str, need: int, have: int) -> Rejection:
    if side is _BUY:
        return Rejection(
            Reject.INSUFFICIENT_BALANCE,
            f"the order needs {cash_text(need, asset)} and {cash_text(have, asset)} is available",
        )
    return Rejection(
        Reject.INSUFFICIENT_SHARES,
        f"the order needs {need} units of {asset} and {have} are available",
    )


def _check_phase_allows_entry(instrument: Instrument) -> None:
    phase = instrument.phase
    if phase in _CLOSED_PHASES:
        raise Rejection(Reject.MARKET_CLOSED, f"{instrument.terms.symbol} is {phase.value}")
    if phase is Phase.HALTED:
        raise Rejection(Reject.TRADING_HALTED, f"{instrument.terms.symbol} is halted")


def _check_order_shape(instrument: Instrument, command: PlaceOrder, now_ts_ns: int) -> None:
    tif = command.time_in_force
    if instrument.phase is Phase.OFFERING:
        if command.side is not _BUY:
            raise Rejection(Reject.VALIDATION_ERROR, "an offering takes only bids")
        if command.actor == instrument.terms.issuer_account:
            # Its bid would meet its own offering order, which self-trade prevention could
            # cancel: the offering would go on without anything to sell.
            raise Rejection(Reject.VALIDATION_ERROR, "the issuer may not bid in its own offering")
        if command.order_type is _MARKET:
            # A market bid's price would be the static band's edge, which has nothing to do
            # with the offering's minimum: below it, the bid could never fill yet would hold
            # its cash until the offering ends. A bidder names its price.
            raise Rejection(Reject.VALIDATION_ERROR, "an offering takes only limit bids")
    if command.order_type is _MARKET:
        if command.price_ticks != 0:
            raise Rejection(Reject.VALIDATION_ERROR, "a market order takes no price")
        if command.post_only or tif not in (TimeInForce.IOC, TimeInForce.FOK):
            raise Rejection(
                Reject.VALIDATION_ERROR, "a market order must be IOC or FOK and not post-only"
            )
    if command.post_only and tif in (TimeInForce.IOC, TimeInForce.FOK):
        raise Rejection(Reject.VALIDATION_ERROR, "a post-only order cannot be IOC or FOK")
    if tif is TimeInForce.GTD:
        if command.expire_ts_ns <= now_ts_ns:
            raise Rejection(Reject.VALIDATION_ERROR, "a GTD order needs a future expire_ts_ns")
        if command.expire_ts_ns > TS_NS_MAX:  # The book keeps it: it must stay encodable.
            raise Rejection(
                Reject.VALIDATION_ERROR,
                "a GTD order's expire_ts_ns is at most 2**63 - 1 (the clock's last ns)",
            )
    elif command.expire_ts_ns != 0:
        raise Rejection(Reject.VALIDATION_ERROR, "only a GTD order takes an expire_ts_ns")


def _check_quantity(instrument: Instrument, quantity_units: int) -> None:
    lot = instrument.terms.lot_size_units
    if not 0 < quantity_units <= QUANTITY_UNITS_MAX or quantity_units % lot:
        raise Rejection(
            Reject.INVALID_QUANTITY,
            f"quantity {quantity_units} must be a positive multiple of the lot size {lot} "
            f"and at most {QUANTITY_UNITS_MAX}",
        )


def _check_price(instrument: Instrument, price_ticks: int) -> None:
    offering = instrument.offering
    if instrument.phase is Phase.OFFERING and offering is not None:
        if price_ticks < offering.min_price_ticks:
            raise Rejection(
                Reject.PRICE_BAND,
                f"price {_price(instrument, price_ticks)} is below the offering's minimum "
                f"{_price(instrument, offering.min_price_ticks)}",
            )
        return
    low, high = instrument.static_low, instrument.static_high
    if not low <= price_ticks <= high:
        raise Rejection(
            Reject.PRICE_BAND,
            f"price {_price(instrument, price_ticks)} is outside the price band "
            f"[{_price(instrument, low)}, {_price(instrument, high)}]",
        )


def _price(instrument: Instrument, price_ticks: int) -> str:
    # Messages quote prices as the client writes them ("100.25"), not in ticks.
    terms = instrument.terms
    return price_text(price_ticks, terms.tick_size_minor, terms.currency)


def _would_trade_through(
    state: ExchangeState,
    instrument: Instrument,
    account: str,
    side: Side,
    price: int,
    quantity: int,
    stp_mode: StpMode,
) -> bool:
    """Tell whether a taker would print outside the bands.

    The guard is the tighter of the dynamic band (around the last price) and the static band
    (around the reference). Prints happen at the makers' prices, so a taker priced inside the
    band can still print outside it: against a resting order entered under an older reference.
    The taker's own resting orders count as liquidity it takes, which errs towards starting
    an auction (the taker stops at them, or is reduced by them), except under EXPIRE_MAKER:
    that cancels them and the taker sweeps on, so they are left out of the depth it walks.
    """
    low, high = instrument.guard_low, instrument.guard_high
    book = instrument.book
    buying = side is _BUY
    best = book.best_ask() if buying else book.best_bid()
    if best is None:
        return False
    best_price = best[0]
    if buying:
        if best_price > price:
            return False  # It does not cross: nothing prints.
        if best_price < low:
            return True
        if price <= high:
            return False  # Every print lies in [best_price, price], inside the guard.
    else:
        if best_price < price:
            return False
        if best_price > high:
            return True
        if price >= low:
            return False
    own = (
        _own_units_by_price(state, instrument, account, side)
        if stp_mode is _EXPIRE_MAKER
        else _NO_UNITS
    )
    depth = 16
    while True:
        bids, asks = book.l2(depth)
        levels = asks if buying else bids
        remaining = quantity
        for level_price, level_units in levels:
            if (buying and level_price > price) or (not buying and level_price < price):
                return False
            others = level_units - own.get(level_price, 0)
            if others <= 0:
                continue  # Only the taker's own orders: canceled, nothing prints here.
            if (buying and level_price > high) or (not buying and level_price < low):
                return True
            remaining -= others
            if remaining <= 0:
                return False
        if len(levels) < depth:
            return False
        depth *= 4


def _own_units_by_price(
    state: ExchangeState, instrument: Instrument, account: str, taker_side: Side
) -> dict[int, int]:
    """The leaves of the account's resting orders a taker on taker_side would meet, by price."""
    units: dict[int, int] = {}
    owner = state.accounts.get(account)
    if owner is None:
        return units
    book = instrument.book
    for order_id in owner.open_orders:
        order = state.orders[order_id]
        if order.instrument is instrument and order.side is not taker_side:
            view = book.order(order_id)
            if view is not None:
                units[view.price_ticks] = units.get(view.price_ticks, 0) + view.leaves_units
    return units


def _order_rejected(
    ctx: Context,
    account: Account | None,
    command: PlaceOrder,
    reason: Reject,
    message: str,
    order_id: int = 0,
) -> Event:
    event = OrderRejected(
        command.actor, command.symbol, command.cl_ord_id, order_id, reason, message
    )
    ctx.events.append(event)
    if account is not None:  # None: nobody who may trade sent it.
        account.execution_seq += 1
    return event


# What the book did, turned into settlement, reservation releases and events.


def apply_book_events(
    state: ExchangeState,
    ctx: Context,
    instrument: Instrument,
    results: Sequence[book_events.BookEvent],
) -> Event:
    """Settle fills, release what cancels free, emit events; return the first event emitted."""
    first_index = len(ctx.events)
    symbol = instrument.terms.symbol
    if instrument.phase is not _CONTINUOUS:
        ctx.touch(symbol)  # Its auction indicative may have moved.
    orders = state.orders
    accounts = state.accounts
    emit = ctx.events.append
    for result in results:
        kind = result.__class__
        if kind is _BOOK_FILLED:
            _settle_fill(state, ctx, instrument, result)  # type: ignore[arg-type]
        elif kind is _BOOK_CANCELED:
            _release_canceled(state, ctx, result)  # type: ignore[arg-type]
        elif kind is _BOOK_ACCEPTED:
            order = orders[result.order_id]  # type: ignore[union-attr]
            accounts[order.account].execution_seq += 1
            emit(
                OrderAccepted(
                    order.account,
                    symbol,
                    order.cl_ord_id,
                    order.order_id,
                    order.side,
                    order.order_type,
                    order.time_in_force,
                    order.price_ticks,
                    order.quantity_units,
                )
            )
        elif kind is book_events.OrderAmended:
            order = orders[result.order_id]  # type: ignore[union-attr]
            accounts[order.account].execution_seq += 1
            emit(
                OrderAmended(
                    order.account,
                    symbol,
                    order.cl_ord_id,
                    order.order_id,
                    result.price_ticks,  # type: ignore[union-attr]
                    result.quantity_units,  # type: ignore[union-attr]
                    result.leaves_units,  # type: ignore[union-attr]
                    result.priority_kept,  # type: ignore[union-attr]
                    order.cum_units,
                )
            )
        elif kind is book_events.AuctionUncrossed:
            if result.volume_units:  # type: ignore[union-attr]
                instrument.last_uncross = (result.price_ticks, result.volume_units)  # type: ignore[union-attr]
            emit(
                AuctionUncrossed(
                    symbol,
                    result.price_ticks,  # type: ignore[union-attr]
                    result.volume_units,  # type: ignore[union-attr]
                    result.imbalance_units,  # type: ignore[union-attr]
                )
            )
        else:
            raise AssertionError(f"unexpected book event {result!r}")
    return ctx.events[first_index] if len(ctx.events) > first_index else _NO_EVENT


_NO_EVENT = CommandRejected("", "", Reject.VALIDATION_ERROR, "the book did nothing")


def _settle_fill(
    state: ExchangeState, ctx: Context, instrument: Instrument, fill: book_events.OrderFilled
) -> None:
    terms = instrument.terms
    orders = state.orders
    buy = orders[fill.buy_order_id]
    sell = orders[fill.sell_order_id]
    price = fill.price_ticks
    units = fill.quantity_units
    tick_size = terms.tick_size_minor
    notional = price * tick_size * units
    aggressor = fill.aggressor_side
    if aggressor is _BUY:
        buy_bps, sell_bps = terms.taker_fee_bps, terms.maker_fee_bps
        buy_liquidity, sell_liquidity = _TAKER, _MAKER
    elif aggressor is None:
        buy_bps = sell_bps = terms.maker_fee_bps
        buy_liquidity = sell_liquidity = _AUCTION
    else:
        buy_bps, sell_bps = terms.maker_fee_bps, terms.taker_fee_bps
        buy_liquidity, sell_liquidity = _MAKER, _TAKER
    buy_fee = notional * buy_bps // BPS_DENOMINATOR
    sell_fee = notional * sell_bps // BPS_DENOMINATOR
    buy_leaves = fill.buy_leaves_units
    sell_leaves = fill.sell_leaves_units
    # The buyer's reservation shrinks from what units+leaves needed to what leaves need; what
    # the trade did not spend (a better price, a lower fee) goes back to available. This is
    # reservation_of() twice, inlined: it runs on every fill.
    max_fee_bps = instrument.max_fee_bps
    before = buy.price_ticks * tick_size * (buy_leaves + units)
    after = buy.price_ticks * tick_size * buy_leaves
    unspent = (
        before
        + before * max_fee_bps // BPS_DENOMINATOR
        - after
        - after * max_fee_bps // BPS_DENOMINATOR
        - notional
        - buy_fee
    )
    symbol = terms.symbol
    buyer = buy.account
    seller = sell.account
    ctx.postings += ctx.balances.settle_trade(
        symbol, units, seller, buyer, terms.currency, notional, buy_fee, sell_fee, unspent,
        FEE_ACCOUNT,
    )  # fmt: skip
    buy_cum = buy.cum_units = buy.cum_units + units
    sell_cum = sell.cum_units = sell.cum_units + units
    instrument.holders[buyer] = None
    if price != instrument.last_price_ticks:
        instrument.set_last_price(price)
    instrument.trade_count += 1
    instrument.volume_units += units
    trade_id = fill.trade_id
    accounts = state.accounts
    accounts[buyer].execution_seq += 1
    accounts[seller].execution_seq += 1
    bought = OrderFilled(buyer, symbol, buy.cl_ord_id, buy.order_id, trade_id, _BUY, price,
                         units, buy_cum, buy_leaves, buy_liquidity, buy_fee)  # fmt: skip
    sold = OrderFilled(seller, symbol, sell.cl_ord_id, sell.order_id, trade_id, _SELL, price,
                       units, sell_cum, sell_leaves, sell_liquidity, sell_fee)  # fmt: skip
    trade = TradeExecuted(symbol, trade_id, price, units, aggressor, ctx.ts_ns)
    ctx.events += (bought, sold, trade)
    instrument.recent_trades.append(trade)
    if aggressor is not None:  # The taker's own fills, kept with its order for resends.
        taker_fill = bought if aggressor is _BUY else sold
        if ctx.taker_fills is None:
            ctx.taker_fills = [taker_fill]
        else:
            ctx.taker_fills.append(taker_fill)
    if buy_leaves == 0:
        _finish(state, buy)
    if sell_leaves == 0:
        _finish(state, sell)


def _release_canceled(
    state: ExchangeState, ctx: Context, canceled: book_events.OrderCanceled
) -> None:
    order = state.orders[canceled.order_id]
    leaves = canceled.leaves_units
    units = canceled.canceled_units
    instrument = order.instrument
    terms = instrument.terms
    side = order.side
    # What the canceled units reserved: reservation_of(leaves + units) - reservation_of(leaves),
    # inlined (every cancel runs it).
    if side is _BUY:
        asset = terms.currency
        before = order.price_ticks * terms.tick_size_minor * (leaves + units)
        after = order.price_ticks * terms.tick_size_minor * leaves
        max_fee_bps = instrument.max_fee_bps
        freed = (
            before
            + before * max_fee_bps // BPS_DENOMINATOR
            - after
            - after * max_fee_bps // BPS_DENOMINATOR
        )
    else:
        asset = terms.symbol
        freed = units
    account = order.account
    if freed:
        ctx.postings.append(ctx.balances.release(account, asset, freed))
    state.accounts[account].execution_seq += 1
    ctx.events.append(
        OrderCanceled(
            account,
            terms.symbol,
            order.cl_ord_id,
            order.order_id,
            side,
            units,
            leaves,
            canceled.reason,
            order.cum_units,
        )
    )
    if leaves == 0:
        _finish(state, order)


def _finish(state: ExchangeState, order: LiveOrder) -> None:
    del state.orders[order.order_id]
    del state.accounts[order.account].open_orders[order.order_id]
    state.finished_orders[order.order_id] = order
    if state.order_sessions:  # Orders placed through gateway sessions (exchange/disconnect.py).
        forget_session_order(state, order.order_id)


# Cancelling and amending.


def find_own_order(
    state: ExchangeState, account: str, order_id: int, cl_ord_id: str
) -> LiveOrder | None:
    """Return the account's open order named by id or cl_ord_id; None for anyone else's."""
    if order_id == 0:
        client_order = state.client_orders.get((account, cl_ord_id))
        if client_order is None:
            return None
        order_id = client_order.order_id
    order = state.orders.get(order_id)
    if order is None or order.account != account:
        return None
    return order


def _is_offering_order(order: LiveOrder) -> bool:
    # By order id: a client may name any order "offering", which makes it no offering order.
    instrument = order.instrument
    return order.order_id == instrument.offering_order_id and instrument.phase is Phase.OFFERING


def cancel_order(state: ExchangeState, ctx: Context, command: CancelOrder) -> Event:
    """Cancel one of the actor's open orders."""
    order = find_own_order(state, command.actor, command.order_id, command.cl_ord_id)
    if order is None:
        return _command_rejected(
            ctx, command.actor, "cancel_order", Reject.UNKNOWN_ORDER, "no such open order"
        )
    if _is_offering_order(order):
        return _command_rejected(
            ctx,
            command.actor,
            "cancel_order",
            Reject.TOO_LATE_TO_CANCEL,
            "the offering's order ends with the offering",
        )
    results = order.instrument.book.cancel(order.order_id, _USER)
    return apply_book_events(state, ctx, order.instrument, results)


def cancel_orders_of(
    state: ExchangeState, ctx: Context, account: str, symbol: str, reason: CancelReason
) -> int:
    """Cancel every open order of an account (in one symbol, or all); return how many."""
    return cancel_open_orders(state, ctx, list(state.accounts[account].open_orders), symbol, reason)


def cancel_open_orders(
    state: ExchangeState, ctx: Context, order_ids: Sequence[int], symbol: str, reason: CancelReason
) -> int:
    """Cancel these open orders, in this order (in one symbol, or all); return how many.

    An offering's own order is left alone: it ends with the offering.
    """
    canceled = 0
    for order_id in order_ids:
        order = state.orders[order_id]
        instrument = order.instrument
        if symbol and instrument.terms.symbol != symbol:
            continue
        if _is_offering_order(order):
            continue
        apply_book_events(state, ctx, instrument, instrument.book.cancel(order_id, reason))
        canceled += 1
    return canceled


def cancel_all(state: ExchangeState, ctx: Context, command: CancelAll) -> Event:
    """Cancel an account's open orders: its own request, or an operator's.

    Rejections, the first failing check wins: FORBIDDEN (unknown actor, or another account's
    orders without the operator role), UNKNOWN_SYMBOL, UNKNOWN_ACCOUNT.
    """
    actor = state.accounts.get(command.actor)
    is_operator = actor is not None and actor.role is Role.OPERATOR
    if actor is None or (command.actor != command.account_id and not is_operator):
        return _command_rejected(
            ctx,
            command.actor,
            "cancel_all",
            Reject.FORBIDDEN,
            "only the account itself or an operator may do this",
        )
    # A misspelt symbol would otherwise cancel nothing and answer "0 canceled" while the
    # orders rest on. Checked before the account, as the gateway does before sequencing.
    if command.symbol and command.symbol not in state.instruments:
        return _command_rejected(
            ctx,
            command.actor,
            "cancel_all",
            Reject.UNKNOWN_SYMBOL,
            f"no instrument {command.symbol!r}",
        )
    if command.account_id not in state.accounts:
        return _command_rejected(
            ctx,
            command.actor,
            "cancel_all",
            Reject.UNKNOWN_ACCOUNT,
            f"no account {command.account_id!r}",
        )
    reason = CancelReason.USER if command.actor == command.account_id else CancelReason.OPERATOR
    count = cancel_orders_of(state, ctx, command.account_id, command.symbol, reason)
    reply = AllOrdersCanceled(command.account_id, command.symbol, count)
    report(state, ctx, command.account_id, reply)
    return reply


def amend_order(state: ExchangeState, ctx: Context, command: AmendOrder) -> Event:
    """Change the price and/or total quantity of one of the actor's open limit orders."""
    order = find_own_order(state, command.actor, command.order_id, command.cl_ord_id)
    if order is None:
        return _command_rejected(
            ctx, command.actor, "amend_order", Reject.UNKNOWN_ORDER, "no such open order"
        )
    try:
        delta = _check_amend(state, ctx, order, command)
    except Rejection as rejection:
        return _command_rejected(
            ctx, command.actor, "amend_order", rejection.reason, rejection.message
        )
    instrument = order.instrument
    results = instrument.book.amend(order.order_id, command.price_ticks, command.quantity_units)
    first = results[0]
    if first.__class__ is book_events.OrderRejected:
        return _command_rejected(
            ctx,
            command.actor,
            "amend_order",
            _BOOK_REJECTS[first.reason],
            first.message,
        )
    order.price_ticks = command.price_ticks
    order.quantity_units = command.quantity_units
    asset = reserved_asset(order)
    if delta > 0:
        ctx.hold(order.account, asset, delta)
    elif delta < 0:
        ctx.release(order.account, asset, -delta)
    return apply_book_events(state, ctx, instrument, results)


def _check_amend(state: ExchangeState, ctx: Context, order: LiveOrder, command: AmendOrder) -> int:
    """Check an amend; return the change in reservation it needs (negative: it frees)."""
    instrument = order.instrument
    _check_phase_allows_entry(instrument)
    if order.order_type is _MARKET or _is_offering_order(order):
        raise Rejection(Reject.VALIDATION_ERROR, "this order cannot be amended")
    _check_quantity(instrument, command.quantity_units)
    if command.price_ticks != order.price_ticks or command.quantity_units > order.quantity_units:
        # The band bounds new risk. An order that rests outside today's band (it was placed
        # under an older reference) may still be reduced in place: that only lowers its risk.
        _check_price(instrument, command.price_ticks)
    view = instrument.book.order(order.order_id)
    assert view is not None, f"open order {order.order_id} is missing from its book"
    used = view.quantity_units - view.leaves_units  # Filled and STP-canceled units.
    new_leaves = command.quantity_units - used
    if new_leaves <= 0:
        raise Rejection(
            Reject.INVALID_QUANTITY,
            f"quantity {command.quantity_units} must exceed the {used} units already done",
        )
    old_need = reservation_of(order, view.leaves_units)
    new_need = reservation_of(order, new_leaves, command.price_ticks)
    delta = new_need - old_need
    if delta > 0:
        available = ctx.balances.available(order.account, reserved_asset(order))
        if delta > available:
            reason = (
                Reject.INSUFFICIENT_BALANCE if order.side is _BUY else Reject.INSUFFICIENT_SHARES
            )
            asset = reserved_asset(order)
            if order.side is _BUY:
                need, have = cash_text(delta, asset), cash_text(available, asset)
            else:
                need, have = f"{delta} units", f"{available}"
            raise Rejection(reason, f"the amend needs {need} more and {have} is available")
    if (
        instrument.phase is Phase.CONTINUOUS
        and not view.post_only
        and _would_trade_through(
            state,
            instrument,
            order.account,
            order.side,
            command.price_ticks,
            new_leaves,
            view.stp_mode,
        )
    ):
        # The book's own checks first, as a dry run (amend() makes them again): an amend the
        # book refuses must change nothing, not even start this auction.
        book_problem = instrument.book.amend_problem(
            order.order_id, command.price_ticks, command.quantity_units
        )
        if book_problem is not None:
            raise Rejection(_BOOK_REJECTS[book_problem[0]], book_problem[1])
        start_auction(ctx, instrument, "volatility", instrument.terms.volatility_auction_ns)
    return delta


def _command_rejected(
    ctx: Context, actor: str, command: str, reason: Reject, message: str
) -> Event:
    event = CommandRejected(actor, command, reason, message)
    ctx.events.append(event)
    return event
