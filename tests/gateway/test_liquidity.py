"""Liquidity figures: each formula on a hand-computed example of the standard instrument.

Rules, each checked below (the standard instrument: tick 10 minor units, USD, 100,000 units,
price 1,000 ticks = 100.00; 1 tick = 0.10 = 10 bps of 100.00):
- mid = (bid + ask) / 2, written exactly, with one decimal more when it falls on a half;
  quoted spread = ask - bid, in bps of mid, rounded down.
- depth within X bps: the units resting at prices within X bps of mid, inclusive, per side.
- two_sided_ppm: the share of the window (clipped at the start of tracking: the tracker's
  start, which after a restart is the restart, not the journal's last record) with a bid and an
  ask; time_weighted_spread_bps: the quoted spread weighted by the time it was shown, over
  the two-sided time only. The window keeps only what is in (now - window, now].
- effective spread: the window mean of 2 |price - mid before| / mid before, in bps.
- day figures since 00:00 UTC: volume, trades, notional, orders entered, turnover in ppm of
  the units issued, order-to-trade ratio x 1000, Amihud |return| / notional (None without
  trades); a new UTC day starts them again.
- royalty yield: trailing-twelve-month distributions / (units x last price), in bps; the
  countdown to the patent's expiry in whole seconds.
- flags: no_two_sided_quote (also when halted, or crossed in an auction); wide_spread above
  WIDE_SPREAD_BPS (500), not at it.
- Each symbol's seq rises by 1 per update; a snapshot carries the current seq; outcomes mark
  the symbols they touched, and only those, as changed. Messages carry no floats and match
  the AsyncAPI document's LiquidityMessage.

Through a real server (tests/gateway/conftest.py):
- `subscribe {channel: "liquidity", symbol}` queues a snapshot first; once a batch is durable
  an update follows for the symbol it changed, with seq = prev_seq + 1. A bid and an ask give
  the spread (99.90 / 100.10: 0.20, 20 bps) and clear the no_two_sided_quote flag.
- Without a change the figures are still refreshed (about once a second).
- /metrics carries the figures as ipx_liquidity_* gauges in base units (spread as a ratio).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from typing import Any

import pytest

from exchange.calendar import NS_PER_DAY, parse_date
from exchange.commands import CancelOrder, Command, DistributeRoyalty, Resume
from exchange.core import Outcome
from exchange.events import Phase
from gateway import liquidity
from gateway.client import IpxClient
from gateway.liquidity import (
    NO_TWO_SIDED_QUOTE,
    WIDE_SPREAD,
    Liquidity,
    LiquidityMessage,
    decode,
    encode,
    mid_text,
    spread_sub_bps,
)
from matching.orders import Side
from tests.exchange.rulebook import (
    BUY,
    INVESTORS,
    ISSUER,
    LICENSEE,
    OPERATOR,
    PATENT_EXPIRY,
    SECOND,
    SELL,
    SYMBOL,
    Market,
    accepted_reply,
    issuance,
    listing,
)
from tests.gateway.conftest import Venue, alice_buys_issuer_sells, metrics_url, scrape_metrics
from tests.gateway.test_asyncapi import DOCUMENT, validate
from tests.gateway.test_market_data import OTHER_PATENT, OTHER_SYMBOL, two_instruments

ALICE, BOB, CAROL, _ = INVESTORS


class WatchedMarket(Market):
    """The standard market in continuous trading, every outcome fed to liquidity trackers."""

    def __init__(self, *window_s: int, **terms: Any) -> None:
        super().__init__()
        self.trading(**terms)
        self.started_ns = self.ts_ns
        self.trackers = [Liquidity(self.exchange, window_s=w) for w in window_s or (300,)]

    def do(self, command: Command, after_ns: int = 1) -> Outcome:
        outcome = super().do(command, after_ns)
        for tracker in getattr(self, "trackers", ()):
            tracker.on_outcome(outcome)
        return outcome

    def later(self, after_ns: int, account: str, side: Side, units: int, price: int) -> None:
        """Let after_ns pass, then place a limit order."""
        accepted_reply(self.do(self.order(account, side, units, price), after_ns))

    def view(self, after_ns: int = 0, tracker: int = 0) -> LiquidityMessage:
        """The standard symbol's figures after_ns after the last command."""
        message = self.trackers[tracker].view(SYMBOL, self.ts_ns + after_ns)
        assert decode(encode(message)) == message, "a message did not round-trip"
        return message


def test_quoted_spread_mid_and_bps() -> None:
    market = WatchedMarket()
    market.buy(ALICE, 5, 999)
    market.sell(ISSUER, 7, 1_001)
    figures = market.view()
    assert (figures.best_bid, figures.best_ask) == ("99.90", "100.10")
    # mid = (99.90 + 100.10) / 2 = 100.00; spread = 0.20; 0.20 / 100.00 = 0.0020 = 20 bps.
    assert figures.mid == "100.00"
    assert figures.quoted_spread == "0.20"
    assert figures.quoted_spread_bps == 20
    assert figures.flags == []


def test_a_mid_on_a_half_minor_unit_gets_one_more_decimal() -> None:
    # Tick 1 minor unit: 999 and 1,000 ticks are 9.99 and 10.00; mid = 19.99 / 2 = 9.995.
    market = WatchedMarket(tick_size_minor=1)
    market.buy(ALICE, 5, 999)
    market.sell(ISSUER, 5, 1_000)
    figures = market.view()
    assert figures.mid == "9.995"
    # 0.01 / 9.995 = 0.0010005 = 10.005 bps, rounded down.
    assert figures.quoted_spread == "0.01" and figures.quoted_spread_bps == 10
    assert mid_text(20_000, 2) == "100.00" and mid_text(1, 0) == "0.5"


def test_depth_within_10_50_100_bps_of_mid_is_inclusive() -> None:
    market = WatchedMarket()
    # Mid 100.00: 10 bps = 0.10 (1 tick), 50 bps = 0.50, 100 bps = 1.00 either side.
    for units, price in ((5, 999), (7, 995), (11, 990), (13, 989)):
        market.buy(ALICE, units, price)
    for units, price in ((3, 1_001), (4, 1_005), (6, 1_010), (8, 1_011)):
        market.sell(ISSUER, units, price)
    figures = market.view()
    assert figures.mid == "100.00"
    assert figures.depth_10bps == (5, 3)  # Bids >= 99.90, asks <= 100.10.
    assert figures.depth_50bps == (5 + 7, 3 + 4)  # Bids >= 99.50, asks <= 100.50.
    assert figures.depth_100bps == (5 + 7 + 11, 3 + 4 + 6)  # 98.90 and 101.10 are outside.
    # The depth follows the book: a cancel at 99.50 leaves 5 + 11 within 100 bps.
    market.cancel(ALICE, market.open_orders(ALICE)[1])
    assert market.view().depth_100bps == (5 + 11, 3 + 4 + 6)


def test_depth_reads_as_many_levels_as_lie_within_reach() -> None:
    # Tick 1 minor, price 10,000 ticks = 100.00: 100 bps = 100 ticks, so 40 one-unit bid
    # levels 9,999 down to 9,960 all lie within it, more than one read of the top.
    market = WatchedMarket(tick_size_minor=1, reference_price_ticks=10_000)
    for price in range(9_999, 9_959, -1):
        market.buy(ALICE, 1, price)
    market.sell(ISSUER, 2, 10_001)
    figures = market.view()
    assert figures.mid == "100.00"
    assert figures.depth_10bps == (10, 2)  # Bids 9,999..9,990 (>= 99.90).
    assert figures.depth_50bps == (40, 2)  # Every bid (>= 99.50).
    assert figures.depth_100bps == (40, 2)


def test_no_quote_gives_no_spread_and_zero_depth() -> None:
    market = WatchedMarket()
    market.buy(ALICE, 5, 999)
    figures = market.view()
    assert figures.best_bid == "99.90" and figures.best_ask is None
    assert figures.mid is None and figures.quoted_spread is None
    assert figures.quoted_spread_bps is None and figures.time_weighted_spread_bps is None
    assert figures.depth_10bps == figures.depth_100bps == (0, 0)
    assert figures.two_sided_ppm == 0
    assert figures.flags == [NO_TWO_SIDED_QUOTE]


def test_time_weighted_spread_and_two_sided_share_over_segments() -> None:
    # Trackers with a 300 s and a 15 s window, both started when trading opened (t0).
    market = WatchedMarket(300, 15)
    market.later(10 * SECOND, ALICE, BUY, 5, 990)  # t0 + 10 s: a bid only.
    market.later(10 * SECOND, ISSUER, SELL, 5, 1_010)  # t0 + 20 s: 99.00 / 101.00.
    # 2.00 / 100.00 = 200 bps, shown for 10 s; then 99.50 / 100.50 = 1.00 / 100.00 = 100 bps
    # (both prices move at the same instant: the 99.50 / 101.00 quote lasts 0 ns).
    market.later(10 * SECOND, ALICE, BUY, 5, 995)  # t0 + 30 s.
    market.later(0, ISSUER, SELL, 5, 1_005)
    long = market.view(after_ns=10 * SECOND)  # At t0 + 40 s.
    # Covered 40 s, two-sided 20 s: 500,000 ppm; (200 x 10 + 100 x 10) / 20 = 150 bps.
    assert long.two_sided_ppm == 500_000
    assert long.time_weighted_spread_bps == 150
    assert long.quoted_spread_bps == 100
    # The 15 s window is (t0 + 25 s, t0 + 40 s]: 5 s of the 200 bps segment, 10 s of the
    # 100 bps one; (200 x 5 + 100 x 10) / 15 = 133.3 -> 133 bps, two-sided all along.
    short = market.view(after_ns=10 * SECOND, tracker=1)
    assert short.two_sided_ppm == 1_000_000
    assert short.time_weighted_spread_bps == 133
    # At t0 + 300 s the 300 s window still starts at t0 (tracking): 280 s of 300 two-sided,
    # 933,333 ppm; (200 x 10 + 100 x 270) / 280 = 103.6 -> 103 bps.
    later = market.view(after_ns=270 * SECOND)
    assert later.two_sided_ppm == 933_333
    assert later.time_weighted_spread_bps == 103


def test_time_weighted_figures_equal_a_recount_of_every_quote_over_a_seeded_session() -> None:
    # The tracker adds a quote to its buckets only when the quote changes; a naive recount
    # keeps the quote after every outcome and sums the two-sided time inside each window.
    seed = int(os.environ.get("IPX_SEED") or random.SystemRandom().randrange(1 << 32))
    print(f"liquidity session: IPX_SEED={seed}")
    rng = random.Random(seed)
    window_s = 15
    market = WatchedMarket(window_s)
    instrument = market.exchange.state.instruments[SYMBOL]
    tracker = market.trackers[0]

    def quote() -> tuple[int, int, bool]:
        bid, ask = instrument.book.best_bid(), instrument.book.best_ask()
        b, a = (bid[0] if bid else 0), (ask[0] if ask else 0)
        return b, a, 0 < b < a and instrument.phase is Phase.CONTINUOUS

    history = [(market.started_ns, quote())]  # (from ts, the quote shown from then on)

    def recount(now_ns: int) -> tuple[int, int]:
        start = (now_ns - window_s * SECOND) // SECOND * SECOND
        covered = now_ns - max(start, market.started_ns)
        two_sided = spread_ns = 0
        for (begin, (bid, ask, quoted)), (end, _) in zip(
            history, [*history[1:], (now_ns, None)], strict=True
        ):
            duration = min(end, now_ns) - max(begin, start)
            if quoted and duration > 0:
                two_sided += duration
                spread_ns += spread_sub_bps(bid, ask) * duration
        if not two_sided:  # The quote began just now: its own spread.
            bid, ask, _ = history[-1][1]
            return 0, spread_sub_bps(bid, ask) // 1_000_000
        return two_sided * 1_000_000 // covered, spread_ns // two_sided // 1_000_000

    views = 0
    for _ in range(400):
        gap = rng.choice((1, 1_000, 300_000_000, 2 * SECOND, 9 * SECOND))
        crossing = rng.random() < 0.2  # Trades too, at a later time than the quote began.
        if rng.random() < 0.5:
            price = rng.randint(1_001, 1_005) if crossing else rng.randint(985, 999)
            market.do(market.order(rng.choice((ALICE, BOB)), BUY, 1, price), gap)
        else:
            price = rng.randint(995, 999) if crossing else rng.randint(1_001, 1_015)
            market.do(market.order(ISSUER, SELL, 1, price), gap)
        history.append((market.ts_ns, quote()))
        if history[-1][1][2] and rng.random() < 0.3:
            figures = tracker.view(SYMBOL, market.ts_ns)
            two_sided_ppm, weighted = recount(market.ts_ns)
            assert figures.two_sided_ppm == two_sided_ppm
            assert figures.time_weighted_spread_bps == weighted
            views += 1
    assert views > 50
    assert tracker.view(SYMBOL, market.ts_ns).day_trades > 20


def test_the_window_forgets_an_old_one_sided_stretch() -> None:
    # A 15 s window: 11 s without a two-sided quote, then 99.00 / 101.00 (200 bps).
    market = WatchedMarket(15)
    market.later(SECOND, ALICE, BUY, 5, 990)
    market.later(10 * SECOND, ISSUER, SELL, 5, 1_010)
    # 10 s later the window (5 s one-sided, 10 s two-sided) is 2/3 two-sided: 666,666 ppm.
    assert market.view(after_ns=10 * SECOND).two_sided_ppm == 666_666
    # 20 s later the window holds only the two-sided quote.
    figures = market.view(after_ns=20 * SECOND)
    assert figures.two_sided_ppm == 1_000_000
    assert figures.time_weighted_spread_bps == 200


def trades_of_a_day(market: WatchedMarket) -> None:
    """Three trades, from a 99.90 / 100.10 quote (the figures are in the tests below)."""
    market.buy(ALICE, 5, 999)
    market.sell(ISSUER, 10, 1_001)
    market.buy(BOB, 4, 1_001)  # 4 @ 100.10, mid before 100.00.
    market.buy(CAROL, 5, 1_000)  # The quote is now 100.00 / 100.10.
    market.sell(ISSUER, 5, 1_000)  # 5 @ 100.00, mid before 100.05.
    market.buy(BOB, 2, 1_001)  # 2 @ 100.10, mid before 100.00 again.


def test_window_and_day_volume_notional_and_turnover() -> None:
    market = WatchedMarket()
    trades_of_a_day(market)
    figures = market.view()
    # Notional: 1,001 x 10 x 4 + 1,000 x 10 x 5 + 1,001 x 10 x 2 = 40,040 + 50,000 + 20,020.
    assert (figures.window_trades, figures.window_volume_units) == (3, 11)
    assert figures.window_notional_minor == 110_060
    assert (figures.day_trades, figures.day_volume_units) == (3, 11)
    assert figures.day_notional_minor == 110_060
    # Turnover: 11 units of 100,000 issued = 110 ppm.
    assert figures.turnover_ppm == 110
    assert figures.last_price == "100.10"
    # The window starts at now - 300 s rounded down to a whole second: the trades, all in the
    # second starting at second_ns, count until second_ns + 301 s, and not from then on.
    second_ns = market.ts_ns // SECOND * SECOND
    tracker = market.trackers[0]
    assert tracker.view(SYMBOL, second_ns + 301 * SECOND - 1).window_trades == 3
    gone = tracker.view(SYMBOL, second_ns + 301 * SECOND)
    assert (gone.window_trades, gone.window_volume_units, gone.window_notional_minor) == (0, 0, 0)
    assert gone.effective_spread_bps is None
    assert (gone.day_trades, gone.day_volume_units) == (3, 11)
    # Views do not go back in time: an earlier now is taken as the latest view's.
    assert market.view().ts_ns == gone.ts_ns and market.view().window_trades == 0


def test_the_window_keeps_at_most_window_s_plus_2_seconds() -> None:
    # A 15 s window over 100 s of quotes changing every 0.7 s, and trades: 17 buckets at most.
    market = WatchedMarket(15)
    for step in range(140):
        market.later(700_000_000, ALICE, BUY, 1, 990 + step % 5)
        if step % 10 == 0:
            market.later(0, ISSUER, SELL, 1, 990 + step % 5)  # Trades with that bid.
        market.later(0, ISSUER, SELL, 1, 1_010)
        assert market.trackers[0].window_buckets(SYMBOL) <= 15 + 2
    assert market.view().window_trades in (2, 3)  # One every 7 s, over 15 to 16 s.


def test_effective_spread_of_trades() -> None:
    market = WatchedMarket()
    trades_of_a_day(market)
    # 2 x |100.10 - 100.00| / 100.00 = 20 bps; 2 x |100.00 - 100.05| / 100.05 = 9.995 bps;
    # 20 bps again. Mean (20 + 9.995002 + 20) / 3 = 16.665 -> 16 bps.
    assert market.view().effective_spread_bps == 16
    # 2 x |2,000 - 2,001| / 2,001 in millionths of a bp: 9,995,002.
    assert 2 * 1 * 10_000 * 1_000_000 // 2_001 == 9_995_002


def test_order_to_trade_ratio() -> None:
    market = WatchedMarket()
    trades_of_a_day(market)
    # Six orders entered (every one accepted), three trades: 6 / 3 = 2 -> 2,000 (x 1000).
    figures = market.view()
    assert figures.day_orders == 6
    assert figures.order_to_trade_milli == 2_000


def test_amihud_on_a_day_with_trades_and_none_without() -> None:
    market = WatchedMarket()
    before = market.view()
    assert before.amihud_ppb_per_million_minor is None and before.order_to_trade_milli is None
    trades_of_a_day(market)
    # No trade before the day: the base is the reference price, 100.00; the day closes at
    # 100.10: |return| = 0.001 = 1,000,000 ppb, over 110,060 minor = 0.11006 million minor:
    # 1,000,000 / 0.11006 = 9,085,953.1 -> 9,085,953.
    assert market.view().amihud_ppb_per_million_minor == 9_085_953
    assert 1 * 10**15 // (1_000 * 110_060) == 9_085_953


def test_amihud_of_a_first_day_opened_by_an_auction_is_from_the_reference_before_it() -> None:
    # The uncross makes its price the reference before the tracker sees its trade: the base
    # must be the reference the day started with, 100.00, not the clearing price (a 0 move).
    market = Market()
    market.pre_open()
    tracker = Liquidity(market.exchange)
    market.do(Resume(OPERATOR, SYMBOL))
    market.rest(ISSUER, SELL, 10, 990)
    market.rest(ALICE, BUY, 10, 990)
    tracker.on_outcome(market.tick_to(market.instrument().phase_until_ns))
    figures = tracker.view(SYMBOL, market.ts_ns)
    assert (figures.day_trades, figures.day_notional_minor) == (1, 99_000)
    # |99.00 - 100.00| / 100.00 = 10,000,000 ppb over 0.099 million minor: 101,010,101.
    assert figures.amihud_ppb_per_million_minor == 10 * 10**15 // (1_000 * 99_000)


def test_a_new_utc_day_starts_the_day_figures_again() -> None:
    market = WatchedMarket()
    trades_of_a_day(market)
    midnight = parse_date("2030-01-16")
    next_day = market.trackers[0].view(SYMBOL, midnight)
    assert (next_day.day_trades, next_day.day_volume_units, next_day.day_orders) == (0, 0, 0)
    assert next_day.amihud_ppb_per_million_minor is None
    assert next_day.turnover_ppm == 0
    # On the new day the base is yesterday's last price, 100.10; a trade at 100.00 is a
    # return of 0.10 / 100.10: 1 x 10**15 / (1,001 x 50,000) = 19,980,019.98 -> 19,980,019.
    market.tick_to(midnight + 1)
    market.sell(ISSUER, 5, 1_000)
    market.buy(ALICE, 5, 1_000)
    figures = market.view()
    assert (figures.day_trades, figures.day_notional_minor) == (1, 50_000)
    assert figures.amihud_ppb_per_million_minor == 19_980_019
    assert figures.order_to_trade_milli == 2_000  # Two orders, one trade.


def test_royalty_yield_at_the_last_price() -> None:
    market = WatchedMarket()
    assert market.view().royalty_yield_bps is None  # No trade yet: no last price.
    market.sell(ISSUER, 5, 1_000)
    market.buy(ALICE, 5, 1_000)
    accepted_reply(market.do(DistributeRoyalty(OPERATOR, SYMBOL, 1_200_000, LICENSEE, "2030-Q1")))
    figures = market.view()
    # 12,000.00 over 100,000 units = 0.12 = 12 minor per unit; 0.12 / 100.00 = 12 bps.
    assert figures.royalty_ttm_minor == 1_200_000
    assert figures.royalty_ttm_per_unit_minor == 12
    assert figures.royalty_yield_bps == 12
    assert figures.last_distribution_period == "2030-Q1"
    assert figures.last_distribution_ts_ns == market.ts_ns
    # 365 days later the distribution is out of the trailing twelve months.
    year_later = market.view(after_ns=365 * NS_PER_DAY)
    assert year_later.royalty_ttm_minor == 0 and year_later.royalty_yield_bps == 0
    assert year_later.last_distribution_period == "2030-Q1"


def test_seconds_to_the_patent_expiry() -> None:
    market = WatchedMarket()
    expiry = parse_date(PATENT_EXPIRY)  # 2035-03-01 00:00 UTC.
    assert market.view().expiry_ts_ns == expiry
    # 2035-02-28 12:00 UTC is 12 h = 43,200 s before it.
    noon = parse_date("2035-02-28") + 12 * 3_600 * SECOND
    assert market.trackers[0].view(SYMBOL, noon).seconds_to_expiry == 43_200
    assert market.trackers[0].view(SYMBOL, expiry + SECOND).seconds_to_expiry == 0


def test_flags_no_quote_and_wide_spread_above_the_threshold_only() -> None:
    market = WatchedMarket()
    assert market.view().flags == [NO_TWO_SIDED_QUOTE]
    market.buy(ALICE, 5, 975)
    market.sell(ISSUER, 5, 1_025)
    # 97.50 / 102.50: 5.00 / 100.00 = 500 bps, at the threshold: not flagged.
    assert market.view().quoted_spread_bps == 500 and market.view().flags == []
    market.cancel(ALICE, market.open_orders(ALICE)[0])
    market.buy(ALICE, 5, 950)
    # 95.00 / 102.50: 7.50 / 98.75 = 759.4 bps.
    figures = market.view()
    assert figures.quoted_spread_bps == 759 and figures.flags == [WIDE_SPREAD]
    assert spread_sub_bps(950, 1_025) // 1_000_000 == 759


def test_a_halted_or_crossed_book_is_no_quote() -> None:
    market = WatchedMarket()
    market.buy(ALICE, 5, 999)
    market.sell(ISSUER, 7, 1_001)
    market.halt()  # The prices still show; nobody can deal at them.
    halted = market.view()
    assert (halted.best_bid, halted.best_ask) == ("99.90", "100.10")
    assert halted.mid is None and halted.quoted_spread_bps is None
    assert halted.depth_10bps == (0, 0) and halted.flags == [NO_TWO_SIDED_QUOTE]
    accepted_reply(market.do(Resume(OPERATOR, SYMBOL)))  # The reopening auction collects.
    market.buy(BOB, 5, 1_002)  # Rests above the ask: the book is crossed until the uncross.
    crossed = market.view()
    assert (crossed.best_bid, crossed.best_ask) == ("100.20", "100.10")
    assert crossed.quoted_spread is None and crossed.flags == [NO_TWO_SIDED_QUOTE]


def test_seqs_rise_by_one_per_update_and_snapshots_carry_the_current_one() -> None:
    market = WatchedMarket()
    tracker = market.trackers[0]
    assert tracker.view(SYMBOL, market.ts_ns).seq == 0
    first = tracker.update(SYMBOL, market.ts_ns)
    second = tracker.update(SYMBOL, market.ts_ns)
    assert (first.type, first.seq, first.prev_seq) == ("update", 1, 0)
    assert (second.seq, second.prev_seq) == (2, 1)
    snapshot = tracker.view(SYMBOL, market.ts_ns)
    assert (snapshot.type, snapshot.seq, snapshot.prev_seq) == ("snapshot", 2, None)
    wire = json.loads(encode(second))
    assert wire["channel"] == "liquidity" and wire["depth_10bps"] == [0, 0]
    assert "prev_seq" not in json.loads(encode(snapshot))


def _no_floats(value: object) -> bool:
    if isinstance(value, dict):
        return all(_no_floats(item) for item in value.values())
    if isinstance(value, list):
        return all(_no_floats(item) for item in value)
    return not isinstance(value, float)


def test_only_touched_symbols_are_changed_and_nothing_is_a_float() -> None:
    market = two_instruments()
    tracker = Liquidity(market.exchange)
    assert tracker.symbols == [SYMBOL, OTHER_SYMBOL]
    assert tracker.take_changed() == []
    tracker.on_outcome(market.buy(ALICE, 5, 495, symbol=OTHER_SYMBOL))
    tracker.on_outcome(market.sell(BOB, 5, 505, symbol=OTHER_SYMBOL))
    assert tracker.take_changed() == [OTHER_SYMBOL]
    assert tracker.take_changed() == []
    # 49.50 / 50.50 around 50.00: 1.00 / 50.00 = 200 bps.
    other = tracker.view(OTHER_SYMBOL, market.ts_ns)
    assert other.quoted_spread_bps == 200 and other.mid == "50.00"
    for symbol in (SYMBOL, OTHER_SYMBOL):
        assert _no_floats(json.loads(encode(tracker.view(symbol, market.ts_ns))))


def test_messages_validate_against_the_asyncapi_document() -> None:
    market = WatchedMarket()
    trades_of_a_day(market)
    validate(encode(market.trackers[0].update(SYMBOL, market.ts_ns)), "LiquidityMessage")
    validate(encode(market.view()), "LiquidityMessage")
    topics = [channel["address"] for channel in DOCUMENT["channels"].values()]
    assert "ipx/v1/md/{symbol}/liquidity" in topics


def test_a_tracker_built_over_a_running_exchange_reads_its_books() -> None:
    market = WatchedMarket()
    market.buy(ALICE, 5, 999)
    market.sell(ISSUER, 7, 1_001)
    fresh = Liquidity(market.exchange)  # As after a restart from the journal.
    figures = fresh.view(SYMBOL, market.ts_ns)
    assert figures.quoted_spread_bps == 20 and figures.depth_10bps == (5, 7)
    assert figures.two_sided_ppm == 1_000_000  # Nothing seen yet: the quote now.
    assert figures.day_trades == 0


def _quoted_99_102() -> tuple[WatchedMarket, int]:
    # The standard market with a 99.00 / 102.00 quote; the ask's order id.
    market = WatchedMarket()
    market.buy(ALICE, 5, 990)
    return market, market.rest(ISSUER, SELL, 5, 1_020)


def test_after_a_restart_the_window_starts_at_the_restart_not_at_the_last_record() -> None:
    # The server is down for 20 s; at its restart the ask is canceled. The 20 s down are no
    # quoted time: nothing was seen, and nobody could deal.
    market, ask = _quoted_99_102()
    restart_ns = market.ts_ns + 20 * SECOND
    fresh = Liquidity(market.exchange, start_ns=restart_ns)  # As the Gateway builds it.
    # The sequencer stamps the first command after the restart with its clock.
    fresh.on_outcome(market.do(CancelOrder(ISSUER, ask), 20 * SECOND + 1))
    figures = fresh.view(SYMBOL, restart_ns + 4 * SECOND)
    assert figures.flags == [NO_TWO_SIDED_QUOTE] and figures.best_ask is None
    assert figures.two_sided_ppm == 0  # Two-sided for 1 ns of the 4 s since the restart.
    # The first outcome of a restart may carry the last record's time (the last run's
    # sessions end then, gateway/sequencer.py): it takes nothing back from the restart.
    market, ask = _quoted_99_102()
    restart_ns = market.ts_ns + 20 * SECOND
    fresh = Liquidity(market.exchange, start_ns=restart_ns)
    fresh.on_outcome(market.do(CancelOrder(ISSUER, ask), 0))
    assert fresh.view(SYMBOL, restart_ns + 4 * SECOND).two_sided_ppm == 0
    # A start before the last record (a wall clock behind the journal's) is that record's time.
    market, ask = _quoted_99_102()
    last_ns = market.ts_ns
    behind = Liquidity(market.exchange, start_ns=last_ns - 60 * SECOND)
    behind.on_outcome(market.cancel(ISSUER, ask))
    # Two-sided for 1 ns of the 10 s since the last record: 0 ppm, rounded down.
    assert behind.view(SYMBOL, last_ns + 10 * SECOND).two_sided_ppm == 0


def test_a_share_class_issued_later_is_tracked_from_its_issue() -> None:
    market = WatchedMarket()
    accepted_reply(market.do(listing(OTHER_PATENT)))
    accepted_reply(market.do(issuance(OTHER_SYMBOL, OTHER_PATENT)))
    tracker = market.trackers[0]
    assert OTHER_SYMBOL in tracker.symbols
    assert OTHER_SYMBOL in tracker.take_changed()
    figures = tracker.view(OTHER_SYMBOL, market.ts_ns + SECOND)
    assert figures.flags == [NO_TWO_SIDED_QUOTE] and figures.two_sided_ppm == 0


# Through a real server.

PUSH_WAIT_S = 5.0


async def _liquidity_until(client: IpxClient, done: Any) -> liquidity.LiquidityMessage:
    # The next liquidity pushes until one satisfies done (bounded by PUSH_WAIT_S).
    deadline = time.monotonic() + PUSH_WAIT_S
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, "no liquidity message satisfied the test in time"
        message = await asyncio.wait_for(client.pushes.get(), remaining)
        if message.get("channel") != "liquidity":
            continue
        typed = liquidity.decode(json.dumps(message))
        if done(typed):
            return typed


@pytest.mark.asyncio
async def test_a_subscriber_sees_the_spread_and_the_flags(market: Venue) -> None:
    watcher = await market.client("bob")
    alice, issuer = await market.client("alice"), await market.client("issuer")
    try:
        subscribed = await watcher.request("subscribe", {"channel": "liquidity", "symbol": SYMBOL})
        assert subscribed["channel"] == "liquidity"
        snapshot = await _liquidity_until(watcher, lambda m: True)
        assert snapshot.type == "snapshot" and snapshot.symbol == SYMBOL
        assert snapshot.flags == [liquidity.NO_TWO_SIDED_QUOTE]
        assert snapshot.mid is None and snapshot.window_s == liquidity.WINDOW_S
        await alice.place(SYMBOL, "buy", 5, "99.90")
        await issuer.place(SYMBOL, "sell", 7, "100.10")
        quoted = await _liquidity_until(watcher, lambda m: m.best_ask is not None)
        assert quoted.type == "update" and quoted.prev_seq == quoted.seq - 1
        assert quoted.seq > snapshot.seq
        assert (quoted.best_bid, quoted.best_ask, quoted.mid) == ("99.90", "100.10", "100.00")
        assert (quoted.quoted_spread, quoted.quoted_spread_bps) == ("0.20", 20)
        assert quoted.depth_10bps == (5, 7)
        assert quoted.flags == []
        # Nothing changes, yet a refresh comes (the time-weighted figures move with time).
        refreshed = await _liquidity_until(watcher, lambda m: m.seq > quoted.seq)
        assert refreshed.quoted_spread_bps == 20 and refreshed.ts_ns >= quoted.ts_ns
    finally:
        for client in (watcher, alice, issuer):
            await client.close()


@pytest.mark.asyncio
async def test_metrics_carry_the_liquidity_gauges(market: Venue) -> None:
    await alice_buys_issuer_sells(market, (5, "99.90"), (7, "100.10"))
    samples = await asyncio.to_thread(scrape_metrics, metrics_url(market.url))
    symbol = (("symbol", SYMBOL),)
    # 20 bps is a ratio of 0.0020.
    assert samples[("ipx_liquidity_quoted_spread_ratio", symbol)] == pytest.approx(0.002)
    depth = ("ipx_liquidity_depth_units", (("side", "ask"), *symbol, ("within_bps", "10")))
    assert samples[depth] == 7
    flag = ("ipx_liquidity_flag", (("flag", liquidity.NO_TWO_SIDED_QUOTE), *symbol))
    assert samples[flag] == 0
    assert samples[("ipx_liquidity_day_trades", symbol)] == 0
    assert ("ipx_liquidity_royalty_yield_ratio", symbol) not in samples  # No trade yet.
    assert samples[("ipx_liquidity_expiry_seconds", symbol)] > 0
