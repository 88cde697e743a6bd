"""The rulebook of listing, issuance and offerings: how a patent becomes tradable shares."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from exchange.admin import AUCTION_NS_MAX
from exchange.calendar import TS_NS_MAX, parse_date
from exchange.commands import (
    CancelOrder,
    CloseMarket,
    Deposit,
    Halt,
    IssueShares,
    OpenOffering,
    Resume,
    TradingMode,
)
from exchange.core import Exchange
from exchange.events import (
    AssetListed,
    AuctionUncrossed,
    IndicativeUpdated,
    OfferingClosed,
    OfferingOpened,
    OrderAmended,
    OrderCanceled,
    OrderFilled,
    Phase,
    PhaseChanged,
    SharesIssued,
    TradeExecuted,
)
from exchange.reasons import Reject
from ledger.records import ISSUANCE_ACCOUNT, Bucket, Posting
from matching.orders import CancelReason, StpMode, TimeInForce
from tests.exchange import rulebook
from tests.exchange.rulebook import (
    BUY,
    CASH,
    FEES,
    FOK,
    HOUR,
    IOC,
    ISSUER,
    MAKER_BPS,
    MARKET,
    OPENING_AUCTION_NS,
    OPERATOR,
    PATENT,
    SELL,
    SYMBOL,
    TOTAL_UNITS,
    USD,
    Market,
    accepted,
    accepted_reply,
    buy_need,
    events,
    fee,
    issuance,
    listing,
)


@pytest.fixture
def market() -> Iterator[Market]:
    yield from rulebook.checked_market()


# Listing.


def test_a_valid_patent_lists_and_moves_nothing(market: Market) -> None:
    market.accounts()
    outcome = market.do(listing())
    assert outcome.reply == AssetListed(
        PATENT, "Method for verifying royalty streams", "2035-03-01"
    )
    assert outcome.record.postings == ()
    assert PATENT in market.exchange.state.assets


@pytest.mark.parametrize(
    ("changes", "reason", "words"),
    [
        ({"patent_id": "US-10123456"}, Reject.VALIDATION_ERROR, "patent id"),
        ({"patent_id": "us10123456b2"}, Reject.VALIDATION_ERROR, "patent id"),
        ({"patent_id": f"{PATENT}\n"}, Reject.VALIDATION_ERROR, "patent id"),
        ({"filing_date": "2015-02-30"}, Reject.VALIDATION_ERROR, "no day 30"),
        ({"expiry_date": "2035-3-1"}, Reject.VALIDATION_ERROR, "YYYY-MM-DD"),
        ({"expiry_date": "2031-02-29"}, Reject.VALIDATION_ERROR, "no day 29"),
        ({"filing_date": "2035-03-01"}, Reject.VALIDATION_ERROR, "expires after it was filed"),
        ({"expiry_date": "2029-12-31"}, Reject.ASSET_EXPIRED, "expired"),
        # In ns past 2**63 - 1, the wire's and the journal's bound (its day ends 23:47 UTC).
        ({"expiry_date": "2262-04-12"}, Reject.VALIDATION_ERROR, "after 2262-04-11"),
        ({"expiry_date": "9999-12-31"}, Reject.VALIDATION_ERROR, "after 2262-04-11"),
        # A patent expires at 00:00 UTC of its expiry date: on that day it is already expired.
        ({"expiry_date": "2030-01-15"}, Reject.ASSET_EXPIRED, "expired"),
        ({"owner_account": "nobody"}, Reject.UNKNOWN_ACCOUNT, "nobody"),
        ({"currency": "usd"}, Reject.VALIDATION_ERROR, "ISO 4217"),
        ({"title": ""}, Reject.VALIDATION_ERROR, "title"),
        ({"jurisdiction": "USA"}, Reject.VALIDATION_ERROR, "jurisdiction"),
        ({"trailing_royalties_minor": -1}, Reject.VALIDATION_ERROR, "trailing royalties"),
        ({"family": ("EP-3012345",)}, Reject.VALIDATION_ERROR, "family"),
        ({"family": ("EP3012345B1", "EP3012345B1")}, Reject.VALIDATION_ERROR, "each once"),
        ({"family": (PATENT,)}, Reject.VALIDATION_ERROR, "each once"),
        ({"family": tuple(f"EP30{n:05d}B1" for n in range(51))}, Reject.VALIDATION_ERROR, "50"),
    ],
    ids=lambda value: str(value) if not isinstance(value, dict) else "-".join(value),
)
def test_a_bad_listing_is_rejected_and_changes_nothing(
    market: Market, changes: dict[str, Any], reason: Reject, words: str
) -> None:
    market.accounts()
    market.refused(listing(**changes), reason, words)
    assert market.exchange.state.assets == {}


def test_a_patent_expiring_on_the_last_day_the_clock_reaches_lists_and_snapshots(
    market: Market,
) -> None:
    market.accounts()
    market.do(listing(expiry_date="2262-04-11"))
    accepted_reply(market.do(issuance()))
    market.open_trading()
    assert market.exchange.state.assets[PATENT].expiry_ts_ns <= TS_NS_MAX
    restored = Exchange.from_snapshot(market.exchange.snapshot())
    assert restored.state_hash() == market.exchange.state_hash()


def test_a_patent_lists_once(market: Market) -> None:
    market.accounts()
    market.do(listing())
    market.refused(listing(title="The same patent again"), Reject.ALREADY_EXISTS, PATENT)


def test_a_patent_family_lists_as_one_asset_and_none_of_it_lists_apart(market: Market) -> None:
    # One royalty stream: listing a member on its own would sell the same stream twice.
    market.accounts()
    family = ("EP3012345B1", "KR1020150001234")
    market.do(listing(family=family))
    assert market.exchange.state.assets[PATENT].listing.family == family
    for member in family:
        market.refused(listing(patent_id=member), Reject.ALREADY_EXISTS, member)
    market.refused(
        listing(patent_id="JP2016123456A", family=("KR1020150001234",)),
        Reject.ALREADY_EXISTS,
        "KR1020150001234",
    )


def test_a_patent_expiring_tomorrow_still_lists(market: Market) -> None:
    market.accounts()
    assert isinstance(market.do(listing(expiry_date="2030-01-16")).reply, AssetListed)


# Issuance.


def test_issuance_credits_the_issuer_with_every_unit_in_one_posting(market: Market) -> None:
    market.accounts()
    market.do(listing())
    outcome = market.do(issuance())
    assert outcome.reply == SharesIssued(SYMBOL, PATENT, ISSUER, TOTAL_UNITS)
    assert outcome.record.postings == (
        Posting(SYMBOL, TOTAL_UNITS, ISSUANCE_ACCOUNT, Bucket.AVAILABLE, ISSUER, Bucket.AVAILABLE),
    )
    assert market.units(ISSUER) == (TOTAL_UNITS, 0)
    assert events(outcome, PhaseChanged)[0].phase is Phase.PRE_OPEN


def test_only_the_patents_owner_can_be_issued_its_shares(market: Market) -> None:
    market.accounts()
    market.do(listing())
    market.refused(issuance(issuer_account="alice"), Reject.FORBIDDEN, "owner")
    assert market.units("alice") == (0, 0)


def test_a_symbol_is_unique_even_across_patents(market: Market) -> None:
    market.accounts()
    market.do(listing())
    market.do(listing("US20000001A1"))
    market.do(issuance())
    market.refused(issuance(patent_id="US20000001A1"), Reject.ALREADY_EXISTS, SYMBOL)
    assert market.units(ISSUER) == (TOTAL_UNITS, 0)


def test_shares_of_an_unlisted_patent_cannot_be_issued(market: Market) -> None:
    market.accounts()
    market.refused(issuance(), Reject.UNKNOWN_ASSET, PATENT)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"total_units": 1_005, "lot_size_units": 10}, Reject.INVALID_QUANTITY),
        ({"total_units": 0}, Reject.INVALID_QUANTITY),
        ({"tick_size_minor": 0}, Reject.VALIDATION_ERROR),
        ({"taker_fee_bps": 1_001}, Reject.VALIDATION_ERROR),
        ({"static_band_bps": 0}, Reject.VALIDATION_ERROR),
        ({"currency": "EUR"}, Reject.VALIDATION_ERROR),
        ({"symbol": "rs-lower"}, Reject.VALIDATION_ERROR),
        ({"symbol": f"{SYMBOL}\n"}, Reject.VALIDATION_ERROR),
        ({"trading_mode": TradingMode.PERIODIC_AUCTION}, Reject.VALIDATION_ERROR),
        ({"auction_interval_ns": 5}, Reject.VALIDATION_ERROR),
        ({"opening_auction_ns": AUCTION_NS_MAX + 1}, Reject.VALIDATION_ERROR),
        ({"volatility_auction_ns": AUCTION_NS_MAX + 1}, Reject.VALIDATION_ERROR),
        (
            {
                "trading_mode": TradingMode.PERIODIC_AUCTION,
                "auction_interval_ns": AUCTION_NS_MAX + 1,
            },
            Reject.VALIDATION_ERROR,
        ),
    ],
    ids=lambda value: "-".join(value) if isinstance(value, dict) else value.value,
)
def test_bad_share_terms_are_rejected_and_issue_nothing(
    market: Market, changes: dict[str, Any], reason: Reject
) -> None:
    market.accounts()
    market.do(listing())
    market.refused(issuance(**changes), reason)
    assert market.exchange.state.instruments == {}


def test_auctions_may_last_up_to_auction_ns_max_and_end_within_the_clocks_range(
    market: Market,
) -> None:
    # A timed phase ends at ts_ns + its duration: bounded, so that it stays below 2**63.
    market.accounts()
    market.do(listing())
    terms: dict[str, Any] = {
        "opening_auction_ns": AUCTION_NS_MAX,
        "volatility_auction_ns": AUCTION_NS_MAX,
        "trading_mode": TradingMode.PERIODIC_AUCTION,
        "auction_interval_ns": AUCTION_NS_MAX,
    }
    accepted_reply(market.do(issuance(**terms)))
    accepted_reply(market.do(Resume(OPERATOR, SYMBOL)))
    assert market.instrument().phase_until_ns == market.ts_ns + AUCTION_NS_MAX <= TS_NS_MAX
    assert Exchange.from_snapshot(market.exchange.snapshot()).state_hash() == (
        market.exchange.state_hash()
    )


# Balances are kept per (account, asset), where an asset is a currency or a symbol: a symbol
# that a currency could ever have would merge units and cash into one balance.


@pytest.mark.parametrize("symbol", ["USD", "EUR", "ABC"])
def test_a_symbol_never_has_the_form_of_a_currency_code(market: Market, symbol: str) -> None:
    market.accounts()
    market.do(listing())
    market.do(Deposit(OPERATOR, "alice", "EUR", 5_000))
    market.refused(issuance(symbol=symbol), Reject.VALIDATION_ERROR, "currency code")
    assert market.exchange.state.instruments == {}


def test_a_short_symbol_that_no_currency_can_have_is_issued(market: Market) -> None:
    market.accounts()
    market.do(listing())
    assert isinstance(market.do(issuance(symbol="AB1")).reply, SharesIssued)


def test_shares_of_a_patent_that_has_expired_since_listing_cannot_be_issued(
    market: Market,
) -> None:
    market.accounts()
    market.do(listing(expiry_date="2030-01-16"))
    market.tick_to(parse_date("2030-01-16"))
    market.refused(issuance(), Reject.ASSET_EXPIRED, "expired")


# Offerings: a uniform-price auction of the issuer's units.

# The standard book of bids for an offering of 100 units at a minimum of 900:
#   alice 60@950, bob 30@940, carol 20@920, then dave 20@920.
# Demand at 900 and at 920 is 130 for 100 offered: both sell all 100 with an imbalance of 30,
# so the offering clears at the higher of the two, 920; at 940 only 90 would sell.


def _standard_offering(market: Market) -> dict[str, int]:
    market.pre_open()
    market.offering(100, 900)
    return {
        account: accepted(market.buy(account, units, price))
        for account, units, price in (
            ("alice", 60, 950),
            ("bob", 30, 940),
            ("carol", 20, 920),
            ("dave", 20, 920),
        )
    }


def test_an_offering_reserves_the_issuers_units_and_takes_bids(market: Market) -> None:
    market.pre_open()
    outcome = market.offering(100, 900)
    assert isinstance(outcome.reply, OfferingOpened)
    assert market.phase() is Phase.OFFERING
    assert market.units(ISSUER) == (TOTAL_UNITS - 100, 100)
    accepted(market.buy("alice", 10, 950))
    assert market.cash("alice") == (CASH - buy_need(950, 10), buy_need(950, 10))


def test_an_offering_takes_only_bids_at_or_above_its_minimum(market: Market) -> None:
    market.pre_open()
    market.offering(100, 900)
    market.refused(market.order("alice", BUY, 10, 899), Reject.PRICE_BAND, "minimum")
    market.refused(market.order(ISSUER, SELL, 10, 950), Reject.VALIDATION_ERROR, "only bids")
    accepted(market.buy("alice", 10, 900))


@pytest.mark.parametrize("tif", [IOC, FOK])
@pytest.mark.parametrize("min_price", [900, 1_500], ids=["inside-the-band", "above-the-band"])
def test_an_offering_takes_only_limit_bids(
    market: Market, min_price: int, tif: TimeInForce
) -> None:
    # A market bid would be priced at the static band's edge (1,100 here), not at anything the
    # bidder chose; above the band, it could never fill and would hold its cash to the end.
    market.pre_open()
    market.offering(100, min_price)
    market_bid = market.order("alice", BUY, 10, order_type=MARKET, tif=tif)
    market.refused(market_bid, Reject.VALIDATION_ERROR, "only limit bids")
    accepted(market.buy("alice", 10, min_price))


def test_the_issuer_cannot_cancel_the_offering_while_it_runs(market: Market) -> None:
    market.pre_open()
    market.offering(100, 900)
    offering_id = market.instrument().offering_order_id
    market.refused(CancelOrder(ISSUER, offering_id), Reject.TOO_LATE_TO_CANCEL, "offering")


def test_an_investors_order_named_like_the_offering_is_an_ordinary_order(market: Market) -> None:
    market.pre_open()
    market.offering(100, 900)
    order_id = accepted(market.buy("alice", 10, 950, cl="offering"))
    assert isinstance(market.cancel("alice", order_id).reply, OrderCanceled)
    market.tick(HOUR)
    market.tick(OPENING_AUCTION_NS)
    order_id = market.rest("bob", BUY, 10, 900, cl="offering")
    assert isinstance(market.amend("bob", order_id, 5, 900).reply, OrderAmended)


def test_an_investors_bid_resting_before_the_offering_joins_it_rather_than_blocks_it(
    market: Market,
) -> None:
    market.pre_open()
    early = market.rest("alice", BUY, 10, 950)
    market.offering(100, 900)
    market.buy("bob", 90, 950)
    outcome = market.tick(HOUR)
    assert events(outcome, OfferingClosed) == [OfferingClosed(SYMBOL, True, 950, 100, "cleared")]
    assert market.units("alice") == (10, 0)
    assert early not in market.exchange.state.orders


def test_an_offering_cannot_open_over_the_issuers_own_resting_ask(market: Market) -> None:
    market.pre_open()
    market.rest(ISSUER, SELL, 10, 950)
    command = OpenOffering(OPERATOR, SYMBOL, 100, 900, market.ts_ns + HOUR, False)
    market.refused(command, Reject.MARKET_CLOSED, "no sell orders")


def test_an_offering_cannot_open_over_the_issuers_own_resting_bid(market: Market) -> None:
    # Self-trade prevention between the offering's order and its issuer's bid would cancel
    # one of them: the offering could run on with nothing to sell.
    market.pre_open()
    market.do(Deposit(OPERATOR, ISSUER, USD, CASH))
    bid = market.rest(ISSUER, BUY, 10, 950)
    command = OpenOffering(OPERATOR, SYMBOL, 100, 900, market.ts_ns + HOUR, False)
    market.refused(command, Reject.VALIDATION_ERROR, "cancel them")
    market.cancel(ISSUER, bid)
    market.offering(100, 900)


@pytest.mark.parametrize("stp", list(StpMode))
def test_the_issuer_cannot_bid_in_its_own_offering(market: Market, stp: StpMode) -> None:
    market.pre_open()
    market.do(Deposit(OPERATOR, ISSUER, USD, CASH))
    market.offering(100, 900)
    market.refused(market.order(ISSUER, BUY, 10, 950, stp=stp), Reject.VALIDATION_ERROR, "issuer")
    assert market.book_order(market.instrument().offering_order_id) is not None


@pytest.mark.parametrize(
    ("command", "phase"),
    [(Halt(OPERATOR, SYMBOL), Phase.HALTED), (CloseMarket(OPERATOR, SYMBOL), Phase.CLOSED)],
)
def test_an_operator_can_stop_a_running_offering_and_nothing_is_sold(
    market: Market, command: Halt | CloseMarket, phase: Phase
) -> None:
    market.pre_open()
    market.offering(100, 900)
    bid = accepted(market.buy("alice", 60, 950))
    outcome = market.do(command)
    assert events(outcome, OfferingClosed) == [
        OfferingClosed(SYMBOL, False, 0, 0, f"withdrawn: {phase.value} by {OPERATOR}")
    ]
    assert [(event.order_id, event.reason) for event in events(outcome, OrderCanceled)] == [
        (bid, CancelReason.OPERATOR),
        (market.instrument().offering_order_id, CancelReason.OPERATOR),
    ]
    assert events(outcome, TradeExecuted) == []
    assert (market.phase(), market.instrument().offering) == (phase, None)
    assert market.units(ISSUER) == (TOTAL_UNITS, 0)
    assert market.cash("alice") == (CASH, 0)
    assert market.tick(2 * HOUR).events == []  # The offering's end is no timer any more.


@pytest.mark.parametrize("stop", [Halt, CloseMarket], ids=["halt", "close"])
def test_an_offering_stopped_by_the_operator_may_be_offered_again(
    market: Market, stop: type[Halt] | type[CloseMarket]
) -> None:
    # Withdrawn, nothing sold: the instrument never traded, so its first sale may still be an
    # offering, as after an offering that failed on its own.
    market.pre_open()
    market.offering(100, 900)
    market.buy("alice", 60, 950)
    market.do(stop(OPERATOR, SYMBOL))
    outcome = market.offering(100, 900)
    assert events(outcome, PhaseChanged)[-1].phase is Phase.OFFERING
    market.buy("bob", 100, 920)
    closing = market.tick(HOUR)
    assert events(closing, OfferingClosed) == [OfferingClosed(SYMBOL, True, 920, 100, "cleared")]
    assert market.units("bob") == (100, 0)


def test_a_pre_open_instrument_closed_for_the_day_may_be_offered_the_next_day(
    market: Market,
) -> None:
    market.pre_open()
    market.do(CloseMarket(OPERATOR, SYMBOL))
    market.tick(24 * HOUR)
    market.offering(100, 900)
    assert market.phase() is Phase.OFFERING


def test_a_halted_instrument_that_opened_without_a_trade_may_be_offered(market: Market) -> None:
    market.trading()  # The opening auction crossed nothing.
    market.halt()
    market.offering(100, 900)
    assert market.phase() is Phase.OFFERING


@pytest.mark.parametrize("stop", [Halt, CloseMarket], ids=["halt", "close"])
def test_an_instrument_that_has_traded_is_never_offered_even_when_stopped(
    market: Market, stop: type[Halt] | type[CloseMarket]
) -> None:
    market.trading()
    market.give_units("alice", 10)
    market.do(stop(OPERATOR, SYMBOL))
    command = OpenOffering(OPERATOR, SYMBOL, 100, 900, market.ts_ns + HOUR, False)
    market.refused(command, Reject.MARKET_CLOSED, "has traded")


def test_an_offerings_indicative_price_is_the_price_it_clears_at(market: Market) -> None:
    market.pre_open(reference_price_ticks=900)
    market.offering(100, 900)
    # 130 bid at 950 for 100 offered at 900: 900 and 950 both sell 100 with 30 left over.
    indicative = events(market.buy("alice", 130, 950), IndicativeUpdated)
    closed = events(market.tick(HOUR), OfferingClosed)
    assert closed == [OfferingClosed(SYMBOL, True, 950, 100, "cleared")]
    assert indicative == [IndicativeUpdated(SYMBOL, 950, 100, 30)]


def test_an_offering_clears_at_the_highest_price_that_sells_the_most(market: Market) -> None:
    _standard_offering(market)
    outcome = market.tick(HOUR)
    closed = events(outcome, OfferingClosed)
    assert closed == [OfferingClosed(SYMBOL, True, 920, 100, "cleared")]
    assert events(outcome, AuctionUncrossed) == [AuctionUncrossed(SYMBOL, 920, 100, 30)]
    assert {trade.price_ticks for trade in events(outcome, TradeExecuted)} == {920}
    assert all(trade.aggressor_side is None for trade in events(outcome, TradeExecuted))
    assert market.instrument().reference_price_ticks == 920


def test_an_offering_allocates_by_price_then_time_and_splits_the_marginal_bid(
    market: Market,
) -> None:
    ids = _standard_offering(market)
    outcome = market.tick(HOUR)
    bought = {
        fill.account: fill.quantity_units
        for fill in events(outcome, OrderFilled)
        if fill.side is BUY
    }
    assert bought == {"alice": 60, "bob": 30, "carol": 10}
    canceled = {event.order_id: event.canceled_units for event in events(outcome, OrderCanceled)}
    assert canceled == {ids["carol"]: 10, ids["dave"]: 20}
    assert all(
        event.reason is CancelReason.AUCTION_REMAINDER for event in events(outcome, OrderCanceled)
    )
    assert [market.units(account) for account in ("alice", "bob", "carol", "dave")] == [
        (60, 0),
        (30, 0),
        (10, 0),
        (0, 0),
    ]


def test_every_offering_bid_pays_the_clearing_price_and_gets_the_rest_back_to_the_minor_unit(
    market: Market,
) -> None:
    _standard_offering(market)
    market.tick(HOUR)
    # An offering trade is an auction trade: both sides pay the maker fee.
    for account, units in (("alice", 60), ("bob", 30), ("carol", 10), ("dave", 0)):
        paid = 920 * 10 * units + fee(920, units, MAKER_BPS)
        assert market.cash(account) == (CASH - paid, 0), account
    proceeds = 920 * 10 * 100 - fee(920, 100, MAKER_BPS)
    assert market.cash(ISSUER) == (proceeds, 0)
    assert market.cash(FEES) == (552 + 276 + 92 + 920, 0)
    assert market.units(ISSUER) == (TOTAL_UNITS - 100, 0)


def test_the_issuers_unsold_units_are_released_when_bids_fall_short(market: Market) -> None:
    market.pre_open()
    market.offering(100, 900)
    market.buy("alice", 70, 910)
    outcome = market.tick(HOUR)
    assert events(outcome, OfferingClosed) == [OfferingClosed(SYMBOL, True, 910, 70, "cleared")]
    assert market.units(ISSUER) == (TOTAL_UNITS - 70, 0)
    assert market.units("alice") == (70, 0)


def test_an_all_or_none_offering_not_fully_subscribed_releases_every_reservation(
    market: Market,
) -> None:
    market.pre_open()
    market.offering(100, 900, all_or_none=True)
    market.buy("alice", 60, 950)
    market.buy("bob", 39, 900)
    outcome = market.tick(HOUR)
    assert events(outcome, OfferingClosed)[0].succeeded is False
    assert events(outcome, TradeExecuted) == []
    assert market.phase() is Phase.PRE_OPEN
    for account in ("alice", "bob"):
        assert market.cash(account) == (CASH, 0)
    assert market.units(ISSUER) == (TOTAL_UNITS, 0)
    assert market.exchange.state.orders == {}


def test_an_all_or_none_offering_fully_subscribed_sells_everything(market: Market) -> None:
    market.pre_open()
    market.offering(100, 900, all_or_none=True)
    market.buy("alice", 60, 950)
    market.buy("bob", 40, 900)
    outcome = market.tick(HOUR)
    assert events(outcome, OfferingClosed) == [OfferingClosed(SYMBOL, True, 900, 100, "cleared")]
    assert market.units("alice") == (60, 0)
    assert market.units("bob") == (40, 0)


def test_an_offering_without_bids_fails_and_the_issuer_may_offer_again(market: Market) -> None:
    market.pre_open()
    market.offering(100, 900)
    outcome = market.tick(HOUR)
    assert events(outcome, OfferingClosed)[0].succeeded is False
    assert market.phase() is Phase.PRE_OPEN
    assert market.units(ISSUER) == (TOTAL_UNITS, 0)
    market.offering(100, 800)
    assert market.phase() is Phase.OFFERING


def test_a_successful_offering_opens_with_an_auction_then_continuous_trading(
    market: Market,
) -> None:
    _standard_offering(market)
    offering = market.instrument().offering
    assert offering is not None
    closing = market.tick(HOUR)  # A little after the offering's end.
    opening = events(closing, PhaseChanged)[-1]
    assert (opening.phase, opening.reason) == (Phase.AUCTION, "opening auction")
    # It opens when the offering ends, however late the command that carries the end comes.
    assert opening.until_ts_ns == offering.end_ts_ns + OPENING_AUCTION_NS
    # In the opening auction orders rest without matching, then uncross at one price.
    accepted(market.sell("alice", 20, 930))
    accepted(market.buy("dave", 10, 940))
    assert events(market.tick_to(opening.until_ts_ns - 1), TradeExecuted) == []
    uncross = market.tick(1)
    assert events(uncross, AuctionUncrossed) == [AuctionUncrossed(SYMBOL, 930, 10, -10)]
    assert market.phase() is Phase.CONTINUOUS
    filled = market.buy("bob", 5, 930)
    assert [trade.price_ticks for trade in events(filled, TradeExecuted)] == [930]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"units": 0}, Reject.INVALID_QUANTITY),
        ({"units": TOTAL_UNITS + 1}, Reject.INSUFFICIENT_SHARES),
        ({"min_price_ticks": 0}, Reject.VALIDATION_ERROR),
        ({"end_ts_ns": 0}, Reject.VALIDATION_ERROR),
        ({"end_ts_ns": TS_NS_MAX + 1}, Reject.VALIDATION_ERROR),
        ({"symbol": "RS-NOPE"}, Reject.UNKNOWN_SYMBOL),
    ],
    ids=lambda value: "-".join(value) if isinstance(value, dict) else value.value,
)
def test_a_bad_offering_is_rejected_and_changes_nothing(
    market: Market, changes: dict[str, Any], reason: Reject
) -> None:
    market.pre_open()
    command = OpenOffering(OPERATOR, SYMBOL, 100, 900, market.ts_ns + HOUR, False)
    market.refused(msgspec.structs.replace(command, **changes), reason)


def test_an_offering_opens_only_before_trading(market: Market) -> None:
    market.trading()
    command = OpenOffering(OPERATOR, SYMBOL, 100, 900, market.ts_ns + HOUR, False)
    market.refused(command, Reject.MARKET_CLOSED, "pre-open")


def test_an_issue_shares_command_is_an_operator_command(market: Market) -> None:
    market.accounts()
    market.do(listing())
    command: IssueShares = issuance()
    market.refused(msgspec.structs.replace(command, actor=ISSUER), Reject.FORBIDDEN)
