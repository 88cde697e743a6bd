"""What happens when time passes: expiries, auction ends, offering ends, delisting, day roll.

Invariants:
- Time is an input: timers fire at the start of the first command whose ts_ns reaches them
  (a Tick command exists only to carry time), and that command's record holds their postings,
  so replaying the journal fires the same timers at the same point.
- Timers fire in time order, each at its own time, whenever the command that carries them
  arrives: what they do does not depend on how late that is. A timer that starts a timed
  phase (an offering's end starts the opening auction) starts it at the timer's time, so its
  end may fall due within the same command. Timers due at the same nanosecond fire in a fixed
  order: the day roll first, then per instrument in listing order: GTD expiries, the end of a
  timed phase, then delisting at the patent's expiry.
- GTD expiries between two other timers (or before the command) fire in time order across
  books, each book expiring everything it has due by its turn at once: no pass over every
  book per instant.
- A periodic auction's uncrosses keep to their grid (first end + k x interval); the ends that
  fall inside one gap between commands are one uncross, since a book just uncrossed with no
  order since has nothing more to cross.
"""

from __future__ import annotations

from heapq import heapify, heappop, heappush

from exchange.calendar import NS_PER_DAY
from exchange.commands import TradingMode
from exchange.context import Context
from exchange.events import IndicativeUpdated, OfferingClosed, Phase
from exchange.phases import CALL_PHASES, set_phase, start_auction
from exchange.state import ClientOrder, ExchangeState, Instrument, count_orders_today
from exchange.trading import apply_book_events
from matching.events import AuctionUncrossed
from matching.orders import CancelReason


def advance_clock(state: ExchangeState, ctx: Context) -> None:
    """Fire every timer due at ctx.ts_ns."""
    ts_ns = ctx.ts_ns
    if ts_ns < state.last_ts_ns:
        raise AssertionError(f"time went backwards: {ts_ns} < {state.last_ts_ns}")
    state.last_ts_ns = ts_ns
    if ts_ns < state.next_timer_ns:
        return  # Nothing is due: the common case, kept to one comparison.
    ctx.timers_changed = True
    if state.trading_day < 0:
        state.trading_day = ts_ns // NS_PER_DAY  # The first command: no day to roll yet.
    try:
        while True:
            due, other = _next_timers_ns(state)
            if due > ts_ns:
                break
            if due < other:
                # Only GTD expiries come before the next other timer: they go in time order
                # across the books at once (_expire_gtd), not with a pass over every book per
                # instant.
                _expire_gtd(state, ctx, min(other - 1, ts_ns))
                continue
            ctx.ts_ns = due  # What a timer starts, it starts at its own time.
            _fire_timers(state, ctx, due, ts_ns)
    finally:
        ctx.ts_ns = ts_ns


def _next_timers_ns(state: ExchangeState) -> tuple[int, int]:
    """(the earliest timer of any kind, the earliest that is not a GTD expiry)."""
    other = (state.trading_day + 1) * NS_PER_DAY  # The day roll.
    soonest = other
    for instrument in state.instruments.values():
        other = min(other, instrument.next_phase_timer_ns())
        gtd = instrument.book.next_expiry_ts_ns
        if gtd and gtd < soonest:
            soonest = gtd
    return min(soonest, other), other


def _expire_gtd(state: ExchangeState, ctx: Context, horizon_ns: int) -> None:
    # In time order across books, as one instant at a time would (ties in listing order): a
    # heap of (next expiry, listing index) over the books with one due by the horizon; each
    # book expires all it has due by its turn's instant, then waits for its next one.
    instruments = list(state.instruments.values())
    due = [
        (instrument.book.next_expiry_ts_ns, index)
        for index, instrument in enumerate(instruments)
        if 0 < instrument.book.next_expiry_ts_ns <= horizon_ns
    ]
    heapify(due)
    while due:
        at_ns, index = heappop(due)
        instrument = instruments[index]
        expired = instrument.book.expire(at_ns)
        if expired:
            apply_book_events(state, ctx, instrument, expired)
        following = instrument.book.next_expiry_ts_ns
        if 0 < following <= horizon_ns:
            heappush(due, (following, index))


def _fire_timers(state: ExchangeState, ctx: Context, due: int, now: int) -> None:
    # Every timer due at `due` (each pass of advance_clock's loop fires at least one, or drops
    # a stale GTD entry, so the loop ends).
    day = due // NS_PER_DAY
    if day != state.trading_day:
        roll_day(state, ctx)
        state.trading_day = state.trading_day + 1
    for instrument in state.instruments.values():
        expired = instrument.book.expire(due)  # Those due at this very instant.
        if expired:
            apply_book_events(state, ctx, instrument, expired)
        until = instrument.phase_until_ns
        if until and due >= until:
            if instrument.phase is Phase.OFFERING:
                close_offering(state, ctx, instrument)
            else:
                uncross_auction(state, ctx, instrument, now)
        if due >= instrument.asset.expiry_ts_ns and instrument.phase is not Phase.DELISTED:
            delist(state, ctx, instrument)


def next_timer_ns(state: ExchangeState) -> int:
    """Return the earliest ts_ns at which any timer may fire: a day roll or an instrument's."""
    return _next_timers_ns(state)[0]


def roll_day(state: ExchangeState, ctx: Context) -> None:
    """End the trading day: DAY orders expire, last prices become reference prices, the
    day's ended orders become yesterday's (kept for resends) and yesterday's are forgotten."""
    for instrument in state.instruments.values():
        expired = instrument.book.expire_day()
        if expired:
            apply_book_events(state, ctx, instrument, expired)
        if instrument.last_price_ticks:
            instrument.set_reference_price(instrument.last_price_ticks)
        if instrument.phase in CALL_PHASES:
            # A new reference moves an auction's tie-break, and so maybe its indicative.
            ctx.touch(instrument.terms.symbol)
    # cl_ord_id is unique per trading day: the ids of orders no longer open are free again.
    # But a resend of one may straddle the roll (handled at 23:59:59, resent at 00:00:04), so
    # they are kept one more day as yesterday's, for resends and status queries only (see
    # place_order); yesterday's are forgotten.
    open_orders = state.orders
    today: dict[tuple[str, str], ClientOrder] = {}
    yesterday: dict[tuple[str, str], ClientOrder] = {}
    for key, client_order in state.client_orders.items():
        (today if client_order.order_id in open_orders else yesterday)[key] = client_order
    state.client_orders = today
    count_orders_today(state)
    state.client_orders_yesterday = yesterday
    state.finished_orders_yesterday = state.finished_orders
    state.finished_orders = {}
    state.rejected_orders_yesterday = state.rejected_orders
    state.rejected_orders = {}


def auction_reference_price(instrument: Instrument) -> int:
    """Return the price an auction's ties break towards (its indicative uses the same).

    Uniform-price rule for offerings: of the prices that sell the most with the least
    imbalance, an offering clears at the highest (nearest the best bid), not at the issuer's
    minimum. Other auctions break ties towards the reference price.
    """
    offering = instrument.offering
    if offering is None:
        return instrument.reference_price_ticks
    best_bid = instrument.book.best_bid()
    return offering.min_price_ticks if best_bid is None else best_bid[0]


def uncross_auction(
    state: ExchangeState, ctx: Context, instrument: Instrument, now: int = 0
) -> None:
    """Clear a call auction at one price, then continue trading in the instrument's mode.

    `now` is the time of the command that carries the timer (ctx.ts_ns is the timer's own):
    a periodic auction's next end is the first of its grid after it.
    """
    results = instrument.book.uncross(instrument.reference_price_ticks)
    apply_book_events(state, ctx, instrument, results)
    uncrossed = next(r for r in results if r.__class__ is AuctionUncrossed)
    if uncrossed.volume_units:
        instrument.set_reference_price(uncrossed.price_ticks)
    if instrument.indicative != (0, 0, 0):
        instrument.indicative = (0, 0, 0)
        ctx.events.append(IndicativeUpdated(instrument.terms.symbol, 0, 0, 0))
    terms = instrument.terms
    if terms.trading_mode is TradingMode.PERIODIC_AUCTION:
        interval = terms.auction_interval_ns
        skipped = max(0, now - ctx.ts_ns) // interval  # Whole empty cycles inside the gap.
        start_auction(ctx, instrument, "periodic", interval * (skipped + 1))
    else:
        set_phase(ctx, instrument, Phase.CONTINUOUS, "auction uncrossed")


def cancel_book(
    state: ExchangeState, ctx: Context, instrument: Instrument, reason: CancelReason
) -> None:
    """Cancel every order resting in an instrument's book, bids first, in priority order."""
    book = instrument.book
    bids, asks = book.l3()
    for view in (*bids, *asks):
        apply_book_events(state, ctx, instrument, book.cancel(view.order_id, reason))


def close_offering(state: ExchangeState, ctx: Context, instrument: Instrument) -> None:
    """End an offering: uncross at one price, refund the rest, then open the market."""
    offering = instrument.offering
    assert offering is not None, "an OFFERING phase without an offering"
    symbol = instrument.terms.symbol
    book = instrument.book
    indicative = book.indicative(offering.min_price_ticks)
    volume = 0 if indicative is None else indicative.volume_units
    reference_price = auction_reference_price(instrument)
    instrument.offering = None
    if volume == 0 or (offering.all_or_none and volume < offering.units):
        cancel_book(state, ctx, instrument, CancelReason.AUCTION_REMAINDER)
        why = "no bids" if volume == 0 else "all-or-none offering not fully subscribed"
        ctx.events.append(OfferingClosed(symbol, False, 0, 0, why))
        set_phase(ctx, instrument, Phase.PRE_OPEN, f"offering failed: {why}")
        return
    results = book.uncross(reference_price)
    apply_book_events(state, ctx, instrument, results)
    cancel_book(state, ctx, instrument, CancelReason.AUCTION_REMAINDER)
    uncrossed = next(r for r in results if r.__class__ is AuctionUncrossed)
    price = uncrossed.price_ticks
    instrument.set_reference_price(price)
    ctx.events.append(OfferingClosed(symbol, True, price, volume, "cleared"))
    start_auction(ctx, instrument, "opening", instrument.terms.opening_auction_ns)


def delist(state: ExchangeState, ctx: Context, instrument: Instrument) -> None:
    """The patent expired: cancel every open order; units stay on record."""
    expiry = instrument.asset.listing.expiry_date
    why = f"patent expired on {expiry}"
    if instrument.phase is Phase.OFFERING:
        # OpenOffering refuses an end at or after the expiry, but an offering opened before
        # that rule (in a state restored from an older snapshot) may still run into it. Every
        # way an offering ends says so: this one withdraws it, nothing sold, as a halt does.
        withdraw_offering(state, ctx, instrument, why, CancelReason.DELISTED)
    else:
        cancel_book(state, ctx, instrument, CancelReason.DELISTED)
    set_phase(ctx, instrument, Phase.DELISTED, why)


def withdraw_offering(
    state: ExchangeState, ctx: Context, instrument: Instrument, why: str, reason: CancelReason
) -> None:
    """End an offering before its end: nothing is sold, every bid is canceled (reason) and
    its cash released, the issuer's units go back to available."""
    cancel_book(state, ctx, instrument, reason)
    instrument.offering = None
    ctx.events.append(OfferingClosed(instrument.terms.symbol, False, 0, 0, f"withdrawn: {why}"))
