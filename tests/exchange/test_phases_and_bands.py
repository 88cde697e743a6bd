"""The rulebook of trading phases and price bands: when orders match, and at what prices.

The standard instrument: reference 1,000 ticks, static band 10% ([900, 1100]), dynamic band
5% around the last price (or the reference before the first trade), volatility auctions of
60 s, opening auctions of 30 s.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from exchange.admin import AUCTION_NS_MAX
from exchange.calendar import NS_PER_DAY, parse_date
from exchange.commands import (
    AmendOrder,
    CancelOrder,
    CloseMarket,
    Halt,
    OpenOffering,
    Resume,
    StartAuction,
    TradingMode,
)
from exchange.core import Outcome
from exchange.events import (
    AuctionUncrossed,
    IndicativeUpdated,
    OfferingClosed,
    OrderCanceled,
    Phase,
    PhaseChanged,
    TradeExecuted,
)
from exchange.reasons import Reject
from matching.book import OrderBook
from matching.limits import PRICE_TICKS_MAX
from matching.orders import CancelReason, StpMode
from tests.exchange import rulebook
from tests.exchange.rulebook import (
    BUY,
    CASH,
    DAY,
    GTD,
    HOUR,
    IOC,
    ISSUER,
    OPENING_AUCTION_NS,
    OPERATOR,
    SECOND,
    SELL,
    SYMBOL,
    TOTAL_UNITS,
    VOLATILITY_AUCTION_NS,
    Market,
    accepted,
    accepted_reply,
    buy_need,
    events,
    issuance,
    listing,
)


@pytest.fixture
def market() -> Iterator[Market]:
    yield from rulebook.checked_market()


def _phase_changes(outcome: Outcome) -> list[tuple[Phase, str]]:
    return [(event.phase, event.reason) for event in events(outcome, PhaseChanged)]


# The static band.


def test_a_limit_order_outside_the_static_band_is_rejected_at_its_edges(market: Market) -> None:
    market.trading()
    market.refused(market.order("alice", BUY, 1, 1_101), Reject.PRICE_BAND, "[90.00, 110.00]")
    market.refused(market.order(ISSUER, SELL, 1, 899), Reject.PRICE_BAND, "[90.00, 110.00]")
    accepted(market.buy("alice", 1, 900))
    accepted(market.sell(ISSUER, 1, 1_100))


def test_the_band_edges_round_towards_the_reference(market: Market) -> None:
    market.trading(reference_price_ticks=1_003)  # 10% of 1,003 is 100.3: the band is +/- 100.
    market.refused(market.order("alice", BUY, 1, 902), Reject.PRICE_BAND, "[90.30, 110.30]")
    market.refused(market.order("alice", BUY, 1, 1_104), Reject.PRICE_BAND, "[90.30, 110.30]")
    accepted(market.buy("alice", 1, 903))
    accepted(market.sell(ISSUER, 1, 1_103))


def test_a_band_is_at_least_one_tick_wide_either_side_at_a_low_price(market: Market) -> None:
    market.trading(reference_price_ticks=9)  # 10% of 9 is 0.9 and 5% is 0.45: one tick each.
    market.refused(market.order("alice", BUY, 1, 7), Reject.PRICE_BAND, "[0.80, 1.00]")
    market.refused(market.order(ISSUER, SELL, 1, 11), Reject.PRICE_BAND, "[0.80, 1.00]")
    accepted(market.buy("alice", 1, 8))
    market.rest(ISSUER, SELL, 5, 10)
    outcome = market.buy("bob", 5, 10)  # Inside the one-tick dynamic band: it trades at once.
    assert [trade.price_ticks for trade in events(outcome, TradeExecuted)] == [10]
    assert market.phase() is Phase.CONTINUOUS


def test_the_bands_end_at_the_highest_price_of_any_book(market: Market) -> None:
    # A market order is protected at the band's edge (DESIGN.md section 4). Near the top of the
    # book's range, reference + 10% is above PRICE_TICKS_MAX: left there, the book refused
    # every market buy (and every limit inside the band above it) as off its range.
    reference = 950_000_000
    market.trading(tick_size_minor=1, reference_price_ticks=reference)
    market.open_account("whale", cash=10**12)
    instrument = market.instrument()
    assert (instrument.static_low, instrument.static_high) == (855_000_000, PRICE_TICKS_MAX)
    assert instrument.dynamic_high == 997_500_000
    market.rest(ISSUER, SELL, 1, reference)
    outcome = market.market_buy("whale", 1)
    assert [trade.price_ticks for trade in events(outcome, TradeExecuted)] == [reference]
    limit = "[8550000.00, 10000000.00]"  # PRICE_TICKS_MAX ticks of 0.01.
    market.refused(market.order("whale", BUY, 1, PRICE_TICKS_MAX + 1), Reject.PRICE_BAND, limit)
    market.cancel("whale", market.rest("whale", BUY, 1, PRICE_TICKS_MAX))
    # The dynamic band is held to the range too, once trades print near its top.
    market.rest(ISSUER, SELL, 1, 990_000_000)
    assert events(market.buy("whale", 1, 990_000_000), TradeExecuted)
    assert (instrument.last_price_ticks, instrument.dynamic_high) == (990_000_000, PRICE_TICKS_MAX)


def test_the_day_roll_recentres_the_static_band_on_the_last_price(market: Market) -> None:
    market.trading()
    market.rest(ISSUER, SELL, 1, 1_040)
    market.buy("alice", 1, 1_040)
    market.refused(market.order(ISSUER, SELL, 1, 1_101), Reject.PRICE_BAND)
    market.tick(NS_PER_DAY)
    assert market.instrument().reference_price_ticks == 1_040
    accepted(market.sell(ISSUER, 1, 1_144))  # 1,040 + 104.


# The dynamic band and volatility auctions.


def test_a_trade_inside_the_dynamic_band_happens_at_once(market: Market) -> None:
    market.trading()
    market.rest(ISSUER, SELL, 10, 1_050)
    outcome = market.buy("alice", 10, 1_050)
    assert [trade.price_ticks for trade in events(outcome, TradeExecuted)] == [1_050]
    assert market.phase() is Phase.CONTINUOUS


def test_a_trade_through_the_dynamic_band_starts_a_volatility_auction_instead(
    market: Market,
) -> None:
    market.trading()
    market.rest(ISSUER, SELL, 10, 1_000)
    market.rest(ISSUER, SELL, 10, 1_060)  # Beyond 1,000 + 5%.
    outcome = market.buy("alice", 20, 1_060)
    assert events(outcome, TradeExecuted) == []
    assert _phase_changes(outcome) == [(Phase.AUCTION, "volatility auction")]
    assert market.instrument().phase_until_ns == market.ts_ns + VOLATILITY_AUCTION_NS
    assert events(outcome, IndicativeUpdated) == [IndicativeUpdated(SYMBOL, 1_060, 20, 0)]
    assert market.cash("alice")[1] == buy_need(1_060, 20)


def test_a_taker_sweeping_past_its_own_canceled_orders_is_held_to_the_band(
    market: Market,
) -> None:
    # With expire_maker, the taker's own asks are canceled rather than traded, so they do not
    # stand between it and an ask beyond the band: that print would be a trade-through.
    market.trading()
    market.give_units("alice", 10)
    market.rest("alice", SELL, 10, 1_000)
    market.rest(ISSUER, SELL, 10, 1_060)  # Beyond 1,000 + 5%.
    outcome = market.buy("alice", 10, 1_060, stp=StpMode.EXPIRE_MAKER)
    assert events(outcome, TradeExecuted) == []
    assert _phase_changes(outcome) == [(Phase.AUCTION, "volatility auction")]


def test_a_volatility_auction_uncrosses_at_its_end_then_trading_continues(
    market: Market,
) -> None:
    market.trading()
    market.rest(ISSUER, SELL, 10, 1_000)
    market.rest(ISSUER, SELL, 10, 1_060)
    market.buy("alice", 20, 1_060)
    end = market.instrument().phase_until_ns
    assert events(market.tick_to(end - 1), TradeExecuted) == []
    outcome = market.tick(1)
    assert events(outcome, AuctionUncrossed) == [AuctionUncrossed(SYMBOL, 1_060, 20, 0)]
    assert [trade.price_ticks for trade in events(outcome, TradeExecuted)] == [1_060, 1_060]
    assert _phase_changes(outcome) == [(Phase.CONTINUOUS, "auction uncrossed")]
    assert market.units("alice") == (20, 0)
    assert market.instrument().reference_price_ticks == 1_060


def test_an_ioc_that_would_trade_through_the_dynamic_band_is_rejected_but_starts_the_auction(
    market: Market,
) -> None:
    market.trading()
    market.rest(ISSUER, SELL, 10, 1_000)
    market.rest(ISSUER, SELL, 10, 1_060)
    outcome = market.buy("alice", 20, 1_060, tif=IOC)
    rulebook.rejected(outcome, Reject.PRICE_BAND, "dynamic band")
    assert outcome.record.postings == ()
    assert market.phase() is Phase.AUCTION
    assert market.cash("alice") == (CASH, 0)


def test_a_market_order_that_would_trade_through_waits_for_the_volatility_auction(
    market: Market,
) -> None:
    market.trading()
    market.rest(ISSUER, SELL, 10, 1_000)
    market.rest(ISSUER, SELL, 10, 1_060)
    accepted(market.market_buy("alice", 20))
    assert market.phase() is Phase.AUCTION
    outcome = market.tick(VOLATILITY_AUCTION_NS)
    assert events(outcome, AuctionUncrossed) == [AuctionUncrossed(SYMBOL, 1_060, 20, 0)]
    assert market.units("alice") == (20, 0)


def test_an_operator_can_start_a_volatility_auction(market: Market) -> None:
    market.trading()
    outcome = market.do(StartAuction(OPERATOR, SYMBOL, 5 * SECOND))
    assert _phase_changes(outcome) == [(Phase.AUCTION, "volatility auction")]
    market.rest(ISSUER, SELL, 10, 1_000)
    market.rest("alice", BUY, 10, 1_010)  # Crossed, but an auction does not match.
    outcome = market.tick(5 * SECOND)
    assert events(outcome, AuctionUncrossed) == [AuctionUncrossed(SYMBOL, 1_000, 10, 0)]
    market.refused(StartAuction(OPERATOR, SYMBOL, 0), Reject.VALIDATION_ERROR)


def test_a_volatility_auction_lasts_at_most_auction_ns_max(market: Market) -> None:
    # Its end, ts_ns + duration, must stay within the clock's int64 range.
    market.trading()
    market.refused(StartAuction(OPERATOR, SYMBOL, AUCTION_NS_MAX + 1), Reject.VALIDATION_ERROR)
    accepted_reply(market.do(StartAuction(OPERATOR, SYMBOL, AUCTION_NS_MAX)))
    assert market.instrument().phase_until_ns == market.ts_ns + AUCTION_NS_MAX


# The auction price: most volume, then least imbalance, then nearest the reference price, which
# is itself a candidate when it lies between the best ask and the best bid.


def test_one_bid_and_one_ask_clear_at_the_reference_price_between_them(market: Market) -> None:
    market.pre_open()
    market.do(Resume(OPERATOR, SYMBOL))
    market.rest(ISSUER, SELL, 10, 900)
    outcome = market.buy("alice", 10, 1_100)
    assert events(outcome, IndicativeUpdated) == [IndicativeUpdated(SYMBOL, 1_000, 10, 0)]
    opening = market.tick_to(market.instrument().phase_until_ns)
    assert events(opening, AuctionUncrossed) == [AuctionUncrossed(SYMBOL, 1_000, 10, 0)]
    assert [trade.price_ticks for trade in events(opening, TradeExecuted)] == [1_000]
    assert market.units("alice") == (10, 0)
    assert market.cash("alice")[1] == 0  # The hold at 1,100 is released in full.


def test_market_orders_on_both_sides_clear_at_the_reference_not_at_a_band_edge(
    market: Market,
) -> None:
    market.pre_open()
    market.do(Resume(OPERATOR, SYMBOL))
    accepted(market.market_sell(ISSUER, 10))  # Rests at 900, the band's low edge.
    accepted(market.market_buy("alice", 10))  # Rests at 1,100, its high edge.
    opening = market.tick_to(market.instrument().phase_until_ns)
    assert events(opening, AuctionUncrossed) == [AuctionUncrossed(SYMBOL, 1_000, 10, 0)]
    assert market.instrument().reference_price_ticks == 1_000


# Periodic-auction mode, for thin instruments.


def _periodic(market: Market) -> None:
    market.trading(trading_mode=TradingMode.PERIODIC_AUCTION, auction_interval_ns=10 * SECOND)


def test_a_periodic_instrument_never_trades_continuously(market: Market) -> None:
    _periodic(market)
    assert _phase_changes(market.tick(0)) == []
    assert (market.phase(), market.instrument().phase_until_ns - market.ts_ns) == (
        Phase.AUCTION,
        10 * SECOND,
    )
    market.rest(ISSUER, SELL, 10, 1_000)
    outcome = market.buy("alice", 5, 1_010)
    assert events(outcome, TradeExecuted) == []
    market.refused(market.order("bob", BUY, 5, 1_010, tif=IOC), Reject.NOT_ALLOWED_IN_AUCTION)


def test_a_periodic_auction_publishes_what_it_would_clear_at_as_orders_arrive(
    market: Market,
) -> None:
    _periodic(market)
    assert events(market.sell(ISSUER, 10, 1_000), IndicativeUpdated) == []  # Nothing crosses.
    first = market.buy("alice", 5, 1_010)
    assert events(first, IndicativeUpdated) == [IndicativeUpdated(SYMBOL, 1_000, 5, -5)]
    second = market.buy("bob", 5, 1_020)
    assert events(second, IndicativeUpdated) == [IndicativeUpdated(SYMBOL, 1_000, 10, 0)]
    assert events(market.buy("carol", 1, 950), IndicativeUpdated) == []  # No change.


def test_a_periodic_auction_uncrosses_every_interval(market: Market) -> None:
    _periodic(market)
    market.rest(ISSUER, SELL, 10, 1_000)
    market.rest("alice", BUY, 4, 1_000)
    first = market.tick_to(market.instrument().phase_until_ns)
    assert events(first, AuctionUncrossed) == [AuctionUncrossed(SYMBOL, 1_000, 4, -6)]
    assert _phase_changes(first) == [(Phase.AUCTION, "periodic auction")]
    market.rest("bob", BUY, 6, 1_000)
    assert events(market.tick(10 * SECOND - 2), TradeExecuted) == []
    second = market.tick(1)
    assert events(second, AuctionUncrossed) == [AuctionUncrossed(SYMBOL, 1_000, 6, 0)]
    assert (market.units("alice"), market.units("bob")) == ((4, 0), (6, 0))


# Halts.


def test_a_halt_rejects_new_orders_and_amends_but_allows_cancels(market: Market) -> None:
    market.trading()
    order_id = market.rest("alice", BUY, 10, 990)
    outcome = market.halt()
    assert _phase_changes(outcome) == [(Phase.HALTED, "halted by op")]
    market.refused(market.order("bob", BUY, 1, 990), Reject.TRADING_HALTED)
    market.refused(AmendOrder("alice", 990, 5, order_id), Reject.TRADING_HALTED)
    canceled = market.do(CancelOrder("alice", order_id))
    assert isinstance(canceled.reply, OrderCanceled)
    assert market.cash("alice") == (CASH, 0)


@pytest.mark.parametrize("stop", ["halt", "close"])
def test_market_orders_waiting_for_an_uncross_go_when_the_auction_is_stopped(
    market: Market, stop: str
) -> None:
    # A market order rests only for its auction's uncross; a halt or close leaves it none to
    # wait for, and it must not hold its cash until an operator resumes.
    market.pre_open()
    market.do(Resume(OPERATOR, SYMBOL))
    order_id = accepted(market.market_buy("alice", 5))
    resting = market.rest("bob", BUY, 5, 990)  # A limit order stays, as ever.
    outcome = market.halt() if stop == "halt" else market.do(CloseMarket(OPERATOR, SYMBOL))
    [canceled] = events(outcome, OrderCanceled)
    assert (canceled.order_id, canceled.reason) == (order_id, CancelReason.AUCTION_REMAINDER)
    assert market.cash("alice") == (CASH, 0)
    assert market.open_orders("alice") == [] and market.book_order(resting) is not None


def test_a_halted_instrument_resumes_through_an_opening_auction(market: Market) -> None:
    market.trading()
    market.rest(ISSUER, SELL, 10, 1_000)
    market.halt()
    market.refused(Halt(OPERATOR, SYMBOL), Reject.MARKET_CLOSED, "halted")
    outcome = market.do(Resume(OPERATOR, SYMBOL))
    assert _phase_changes(outcome) == [(Phase.AUCTION, "opening auction")]
    market.rest("alice", BUY, 4, 1_010)
    assert events(market.tick(OPENING_AUCTION_NS - 2), TradeExecuted) == []
    opening = market.tick(1)
    assert events(opening, AuctionUncrossed) == [AuctionUncrossed(SYMBOL, 1_000, 4, -6)]
    assert market.phase() is Phase.CONTINUOUS


@pytest.mark.parametrize("stop", [Halt, CloseMarket], ids=["halt", "close"])
def test_stopping_an_auction_clears_its_indicative_and_a_resume_publishes_it_afresh(
    market: Market, stop: type[Halt] | type[CloseMarket]
) -> None:
    market.pre_open()
    market.do(Resume(OPERATOR, SYMBOL))
    sell_id = market.rest(ISSUER, SELL, 10, 1_000)
    crossed = market.buy("alice", 10, 1_000)
    assert events(crossed, IndicativeUpdated) == [IndicativeUpdated(SYMBOL, 1_000, 10, 0)]
    # A stopped book will not uncross: its indicative is cleared just before the phase change.
    stopped = accepted_reply(market.do(stop(OPERATOR, SYMBOL)))
    assert [type(event) for event in stopped.events[-2:]] == [IndicativeUpdated, PhaseChanged]
    assert events(stopped, IndicativeUpdated) == [IndicativeUpdated(SYMBOL, 0, 0, 0)]
    resumed = market.do(Resume(OPERATOR, SYMBOL))
    assert events(resumed, IndicativeUpdated) == [IndicativeUpdated(SYMBOL, 1_000, 10, 0)]
    # A cancel while stopped publishes nothing; the Resume finds nothing left to cross.
    market.do(stop(OPERATOR, SYMBOL))
    assert events(market.cancel(ISSUER, sell_id), IndicativeUpdated) == []
    resumed = market.do(Resume(OPERATOR, SYMBOL))
    assert events(resumed, IndicativeUpdated) == []
    assert market.instrument().indicative == (0, 0, 0)
    opening = market.tick_to(market.instrument().phase_until_ns)
    assert events(opening, AuctionUncrossed) == [AuctionUncrossed(SYMBOL, 1_000, 0, 0)]


def test_only_a_stopped_instrument_can_be_resumed(market: Market) -> None:
    market.trading()
    market.refused(Resume(OPERATOR, SYMBOL), Reject.MARKET_CLOSED, "continuous")


# Expiries.


def test_a_gtd_order_expires_at_its_time_and_releases_its_reservation(market: Market) -> None:
    market.trading()
    expiry = market.ts_ns + 60 * SECOND
    order_id = market.rest("alice", BUY, 10, 990, tif=GTD, expire_ts_ns=expiry)
    market.tick_to(expiry - 1)
    assert market.book_order(order_id) is not None
    outcome = market.tick(1)
    assert [(event.order_id, event.reason) for event in events(outcome, OrderCanceled)] == [
        (order_id, CancelReason.GTD_EXPIRED)
    ]
    assert market.cash("alice") == (CASH, 0)


def test_day_orders_expire_at_the_day_roll_and_gtc_orders_stay(market: Market) -> None:
    market.trading()
    day_id = market.rest("alice", BUY, 10, 990, tif=DAY)
    gtc_id = market.rest("alice", BUY, 10, 980)
    midnight = parse_date("2030-01-16")
    market.tick_to(midnight - 1)
    assert market.book_order(day_id) is not None
    outcome = market.tick(1)
    assert [(event.order_id, event.reason) for event in events(outcome, OrderCanceled)] == [
        (day_id, CancelReason.DAY_EXPIRED)
    ]
    assert market.book_order(gtc_id) is not None
    assert market.cash("alice")[1] == buy_need(980, 10)


# Delisting: the patent's expiry date ends trading for good.


def _expiring_market(market: Market) -> int:
    market.accounts()
    market.do(listing(expiry_date="2030-01-17"))
    market.do(issuance())
    market.open_trading()
    market.give_units("alice", 10)
    return parse_date("2030-01-17")


def test_the_patents_expiry_delists_the_instrument_and_cancels_every_open_order(
    market: Market,
) -> None:
    expiry = _expiring_market(market)
    buy_id = market.rest("bob", BUY, 5, 990)
    sell_id = market.rest("alice", SELL, 10, 1_050, tif=GTD, expire_ts_ns=expiry + HOUR)
    issuer_id = market.rest(ISSUER, SELL, 100, 1_060)
    market.tick_to(expiry - 1)
    assert market.phase() is Phase.CONTINUOUS
    outcome = market.tick(1)
    canceled = {event.order_id: event.reason for event in events(outcome, OrderCanceled)}
    assert canceled == {
        buy_id: CancelReason.DELISTED,
        sell_id: CancelReason.DELISTED,
        issuer_id: CancelReason.DELISTED,
    }
    assert _phase_changes(outcome) == [(Phase.DELISTED, "patent expired on 2030-01-17")]
    assert market.exchange.state.orders == {}
    assert market.units("alice") == (10, 0)  # Units stay on record.
    assert market.units(ISSUER) == (TOTAL_UNITS - 10, 0)
    assert market.cash("bob")[1] == 0


def test_the_patents_expiry_during_an_auction_clears_its_indicative(market: Market) -> None:
    expiry = _expiring_market(market)
    market.tick_to(expiry - HOUR)
    accepted_reply(market.do(StartAuction(OPERATOR, SYMBOL, 2 * HOUR)))
    market.rest(ISSUER, SELL, 10, 1_000)
    crossed = market.buy("bob", 10, 1_000)
    assert events(crossed, IndicativeUpdated) == [IndicativeUpdated(SYMBOL, 1_000, 10, 0)]
    outcome = market.tick_to(expiry)
    assert events(outcome, IndicativeUpdated) == [IndicativeUpdated(SYMBOL, 0, 0, 0)]
    assert [type(event) for event in outcome.events[-2:]] == [IndicativeUpdated, PhaseChanged]
    assert (market.phase(), market.instrument().indicative) == (Phase.DELISTED, (0, 0, 0))


def test_a_delisted_instrument_takes_no_orders_and_cannot_be_resumed(market: Market) -> None:
    expiry = _expiring_market(market)
    market.tick_to(expiry)
    market.refused(market.order("alice", SELL, 1, 1_000), Reject.MARKET_CLOSED, "delisted")
    market.refused(Resume(OPERATOR, SYMBOL), Reject.MARKET_CLOSED, "delisted")
    market.refused(Halt(OPERATOR, SYMBOL), Reject.MARKET_CLOSED, "delisted")


def test_an_offering_still_running_at_the_patents_expiry_is_withdrawn() -> None:
    # OpenOffering refuses an end at or after the expiry (the next test); an offering opened
    # before that rule, in a state restored from an older snapshot, can still run into it.
    # Such a state is made here by lifting the expiry while the offering opens, so this
    # market's journal does not replay (its OpenOffering is refused now) and is not checked.
    market = Market()
    market.accounts()
    market.do(listing(expiry_date="2030-01-16"))
    market.do(issuance())
    asset = market.instrument().asset
    expiry = asset.expiry_ts_ns
    asset.expiry_ts_ns += 2 * NS_PER_DAY
    market.offering(100, 900, lasts_ns=2 * NS_PER_DAY)
    asset.expiry_ts_ns = expiry
    bid = accepted(market.buy("alice", 50, 950))
    outcome = market.tick_to(expiry)
    assert events(outcome, OfferingClosed) == [
        OfferingClosed(SYMBOL, False, 0, 0, "withdrawn: patent expired on 2030-01-16")
    ]
    assert [(event.order_id, event.reason) for event in events(outcome, OrderCanceled)] == [
        (bid, CancelReason.DELISTED),
        (market.instrument().offering_order_id, CancelReason.DELISTED),
    ]
    assert (market.phase(), market.instrument().offering) == (Phase.DELISTED, None)
    assert market.units(ISSUER) == (TOTAL_UNITS, 0)
    assert market.cash("alice") == (CASH, 0)
    assert market.tick(2 * NS_PER_DAY).events == []  # The offering's timer is gone.


def test_a_post_only_order_beyond_the_dynamic_band_is_rejected_and_starts_no_auction(
    market: Market,
) -> None:
    # A post-only order never trades on arrival, so it cannot trade through the band either.
    market.trading()
    market.rest(ISSUER, SELL, 10, 1_000)
    market.rest(ISSUER, SELL, 10, 1_060)
    command = market.order("alice", BUY, 20, 1_060, post_only=True)
    market.refused(command, Reject.POST_ONLY_WOULD_TRADE)
    assert market.phase() is Phase.CONTINUOUS


def test_amending_a_post_only_order_beyond_the_dynamic_band_is_rejected_and_starts_no_auction(
    market: Market,
) -> None:
    market.trading()
    market.rest(ISSUER, SELL, 10, 1_000)
    market.rest(ISSUER, SELL, 10, 1_060)
    order_id = market.rest("alice", BUY, 20, 990, post_only=True)
    market.refused(AmendOrder("alice", 1_060, 20, order_id), Reject.POST_ONLY_WOULD_TRADE)
    assert market.phase() is Phase.CONTINUOUS


def test_amending_an_order_through_the_dynamic_band_starts_a_volatility_auction(
    market: Market,
) -> None:
    market.trading()
    market.rest(ISSUER, SELL, 10, 1_000)
    market.rest(ISSUER, SELL, 10, 1_060)
    order_id = market.rest("alice", BUY, 20, 990)
    outcome = market.amend("alice", order_id, 20, 1_060)
    assert events(outcome, TradeExecuted) == []
    assert _phase_changes(outcome) == [(Phase.AUCTION, "volatility auction")]
    uncross = market.tick(VOLATILITY_AUCTION_NS)
    assert events(uncross, AuctionUncrossed) == [AuctionUncrossed(SYMBOL, 1_060, 20, 0)]


def test_a_sell_through_the_dynamic_band_starts_a_volatility_auction(market: Market) -> None:
    market.trading()
    market.give_units("carol", 20)
    market.rest("alice", BUY, 10, 1_000)
    market.rest("bob", BUY, 10, 940)  # Below 1,000 - 5%.
    outcome = market.sell("carol", 20, 940)
    assert events(outcome, TradeExecuted) == []
    assert market.phase() is Phase.AUCTION
    uncross = market.tick(VOLATILITY_AUCTION_NS)
    assert events(uncross, AuctionUncrossed) == [AuctionUncrossed(SYMBOL, 940, 20, 0)]


# Time: timers fire in time order, each at its own time, however late the command that carries
# them comes (the gateway ticks an idle exchange, but a busy one carries timers on orders).

LATE = pytest.mark.parametrize(
    "late_ns", [pytest.param(1, id="at-once"), pytest.param(HOUR, id="an-hour-late")]
)


@LATE
def test_an_auction_ending_before_midnight_trades_before_the_day_roll(
    market: Market, late_ns: int
) -> None:
    market.trading()
    midnight = parse_date("2030-01-16")
    market.tick_to(midnight - 2 * VOLATILITY_AUCTION_NS)
    accepted_reply(market.do(StartAuction(OPERATOR, SYMBOL, VOLATILITY_AUCTION_NS)))
    end = market.instrument().phase_until_ns
    market.rest("alice", BUY, 10, 1_000, tif=DAY)  # Would expire at the day roll.
    market.rest(ISSUER, SELL, 10, 1_000)
    outcome = market.tick_to(end - 1 + late_ns)
    assert events(outcome, AuctionUncrossed) == [AuctionUncrossed(SYMBOL, 1_000, 10, 0)]
    assert market.units("alice") == (10, 0)


def test_the_day_roll_republishes_an_auction_indicative_when_the_reference_moves(
    market: Market,
) -> None:
    market.trading()
    market.give_units("alice", 50, 1_040)  # The last price: tomorrow's reference.
    midnight = parse_date("2030-01-16")
    market.tick_to(midnight - HOUR)
    accepted_reply(market.do(StartAuction(OPERATOR, SYMBOL, 2 * HOUR)))
    market.rest("bob", BUY, 10, 1_050)
    crossed = market.sell("alice", 10, 950)
    assert events(crossed, IndicativeUpdated) == [IndicativeUpdated(SYMBOL, 1_000, 10, 0)]
    rolled = market.tick_to(midnight)
    assert market.instrument().reference_price_ticks == 1_040
    assert events(rolled, IndicativeUpdated) == [IndicativeUpdated(SYMBOL, 1_040, 10, 0)]
    uncross = market.tick_to(market.instrument().phase_until_ns)
    assert events(uncross, AuctionUncrossed) == [AuctionUncrossed(SYMBOL, 1_040, 10, 0)]


@LATE
def test_a_gtd_order_that_expired_before_midnight_frees_its_cl_ord_id_the_next_day(
    market: Market, late_ns: int
) -> None:
    market.trading()
    midnight = parse_date("2030-01-16")
    market.rest("alice", BUY, 10, 990, tif=GTD, expire_ts_ns=midnight - SECOND, cl="daily")
    market.tick_to(midnight - SECOND - 1 + late_ns)
    market.tick_to(max(market.ts_ns + 1, midnight + 1))
    accepted(market.buy("alice", 5, 990, cl="daily"))  # Yesterday's id, free today.


@LATE
def test_an_offering_ends_before_the_patents_expiry_and_clears_before_delisting(
    market: Market, late_ns: int
) -> None:
    # Delisting would end it unsold: an offering must be able to clear.
    market.accounts()
    market.do(listing(expiry_date="2030-01-16"))
    market.do(issuance())
    expiry = parse_date("2030-01-16")
    for end in (expiry, expiry + SECOND):
        command = OpenOffering(OPERATOR, SYMBOL, 100, 900, end, False)
        market.refused(command, Reject.VALIDATION_ERROR, "before the patent expires on 2030-01-16")
    accepted_reply(market.do(OpenOffering(OPERATOR, SYMBOL, 100, 900, expiry - 1, False)))
    market.buy("alice", 50, 950)
    outcome = market.tick_to(expiry - 1 + late_ns)
    assert events(outcome, OfferingClosed) == [OfferingClosed(SYMBOL, True, 950, 50, "cleared")]
    assert market.phase() is Phase.DELISTED
    assert market.units("alice") == (50, 0)


@LATE
def test_an_offering_and_its_opening_auction_both_end_in_one_late_command(
    market: Market, late_ns: int
) -> None:
    # The opening auction starts when the offering ends, not when a command notices it: a
    # command after both ends fires both, in order, and trading is continuous.
    market.pre_open()
    market.offering(100, 900)
    market.buy("alice", 60, 950)
    offering_end = market.instrument().phase_until_ns
    outcome = market.tick_to(offering_end + OPENING_AUCTION_NS - 1 + late_ns)
    assert [event.succeeded for event in events(outcome, OfferingClosed)] == [True]
    assert [(change.phase, change.until_ts_ns) for change in events(outcome, PhaseChanged)] == [
        (Phase.AUCTION, offering_end + OPENING_AUCTION_NS),
        (Phase.CONTINUOUS, 0),
    ]
    assert market.units("alice") == (60, 0)


def test_a_periodic_auction_keeps_its_grid_across_a_gap(market: Market) -> None:
    _periodic(market)
    first_end = market.instrument().phase_until_ns
    market.rest(ISSUER, SELL, 10, 1_000)
    market.rest("alice", BUY, 4, 1_000)
    outcome = market.tick_to(first_end + 35 * SECOND)  # Three ends and a half later.
    assert events(outcome, AuctionUncrossed) == [AuctionUncrossed(SYMBOL, 1_000, 4, -6)]
    assert market.instrument().phase_until_ns == first_end + 40 * SECOND


def test_gtd_expiries_and_an_auction_end_in_one_gap_fire_in_time_order(market: Market) -> None:
    market.trading()
    accepted_reply(market.do(StartAuction(OPERATOR, SYMBOL, VOLATILITY_AUCTION_NS)))
    end = market.instrument().phase_until_ns
    early = market.rest("alice", BUY, 10, 1_000, tif=GTD, expire_ts_ns=end - SECOND)
    market.rest("bob", BUY, 10, 1_000, tif=GTD, expire_ts_ns=end + SECOND)
    market.rest(ISSUER, SELL, 10, 1_000)
    outcome = market.tick_to(end + 10 * SECOND)
    canceled = [(event.order_id, event.reason) for event in events(outcome, OrderCanceled)]
    assert canceled == [(early, CancelReason.GTD_EXPIRED)]  # Before the uncross: no trade.
    assert (market.units("alice"), market.units("bob")) == ((0, 0), (10, 0))


def test_many_gtd_expiries_in_one_gap_walk_only_the_books_that_have_them(
    market: Market, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A client may give every order its own expiry instant: the command that carries them all
    # must not walk every book at each of those instants.
    market.trading()
    for number in range(4):  # Four more books, with nothing to expire.
        patent = f"US2000000{number}B2"
        market.do(listing(patent))
        market.do(issuance(symbol=f"RS-{patent}", patent_id=patent))
    start = market.ts_ns
    for index in range(40):
        market.rest("alice", BUY, 1, 990, tif=GTD, expire_ts_ns=start + SECOND + index)
    calls = []
    expire = OrderBook.expire

    def counted(book: OrderBook, now_ts_ns: int) -> Any:
        calls.append(now_ts_ns)
        return expire(book, now_ts_ns)

    monkeypatch.setattr(OrderBook, "expire", counted)
    outcome = market.tick_to(start + 2 * SECOND)
    assert len(events(outcome, OrderCanceled)) == 40
    assert len(calls) == 40  # One per instant in the one book that has them, not 5 x 40.
    assert market.cash("alice") == (CASH, 0)


def test_gtd_expiries_of_several_books_in_one_gap_fire_in_time_order(market: Market) -> None:
    other_symbol, other_patent = "RS-US10123457B2", "US10123457B2"
    market.trading()
    market.do(listing(other_patent))
    market.do(issuance(symbol=other_symbol, patent_id=other_patent))
    market.open_trading(other_symbol)
    start = market.ts_ns
    later = market.rest("alice", BUY, 1, 990, tif=GTD, expire_ts_ns=start + 2 * SECOND)
    sooner = market.rest(
        "bob", BUY, 1, 990, tif=GTD, expire_ts_ns=start + SECOND, symbol=other_symbol
    )
    outcome = market.tick_to(start + 3 * SECOND)
    # The book listed second expires first: its order's time came first.
    assert [event.order_id for event in events(outcome, OrderCanceled)] == [sooner, later]
