"""The public market-data channels: what a subscriber sees after each command.

Rules, each checked below:
- book.l2 carries the top 50 levels per side with absolute quantities (0 deletes a level); a
  level that enters or leaves the top 50 is published too, so a client that applies snapshot
  plus updates holds exactly the server's `l2(50)` at the same seq, checksum included.
- book.l3 carries every resting order (no owner) in priority order; an order that loses
  priority is deleted and added again at the back of its level.
- trades carries every TradeExecuted in order; status every phase change, indicative and
  uncross; ticker changes when the last price, best bid/ask, volume or trade count does.
- Per (channel, symbol) sequence numbers rise by 1 per update, prev_seq names the previous
  one; a lost update shows as a gap at the next update or heartbeat, and a snapshot heals it.
- Every message round-trips through msgspec JSON unchanged.

The seeded random session (two instruments, halts, auctions, expiries, day rolls) replays
with IPX_SEED=<seed> (printed on every run); IPX_MD_STEPS sets its length.
"""

from __future__ import annotations

import json
import os
import random
import time
import zlib
from typing import Any

import msgspec
import pytest

from exchange.commands import (
    AmendOrder,
    CancelAll,
    CancelOrder,
    Command,
    Halt,
    Resume,
    StartAuction,
)
from exchange.core import Exchange, Outcome
from exchange.currencies import decimal_text
from exchange.events import (
    AuctionUncrossed,
    IndicativeUpdated,
    Phase,
    PhaseChanged,
    TradeExecuted,
)
from gateway.local_book import LocalBook, LocalOrderBook
from gateway.market_data import (
    CHANNELS,
    HEARTBEAT,
    L2,
    L2_DEPTH,
    L3,
    STATUS,
    TICKER,
    TRADES,
    BookL2,
    BookL3,
    Heartbeat,
    L3Action,
    MarketData,
    Message,
    Status,
    StatusEvent,
    Ticker,
    Trades,
    channel_of,
    checksum,
    decode,
    encode,
)
from matching.orders import Side, StpMode
from tests.exchange.rulebook import (
    BUY,
    DAY,
    FOK,
    GTC,
    GTD,
    HOUR,
    INVESTORS,
    IOC,
    ISSUER,
    LIMIT,
    MARKET,
    OPERATOR,
    SECOND,
    SELL,
    SYMBOL,
    TICK_MINOR,
    Market,
    accepted,
    accepted_reply,
    issuance,
    listing,
)

OTHER_PATENT = "US10999999B2"
OTHER_SYMBOL = "RS-US10999999B2"
SYMBOLS = (SYMBOL, OTHER_SYMBOL)


def _base_seed() -> int:
    configured = os.environ.get("IPX_SEED")
    return int(configured) if configured else random.SystemRandom().randrange(1 << 32)


BASE_SEED = _base_seed()
STEPS = int(os.environ.get("IPX_MD_STEPS", "3000"))
DROP_PER_MILLE = 20  # Chance per update that the lossy subscriber loses it.
HEARTBEAT_EVERY_STEPS = 20


def price(price_ticks: int) -> str:
    """The wire price of a standard instrument (tick 10 minor units, USD)."""
    return decimal_text(price_ticks * TICK_MINOR, 2)


def server_l2(market: Market, symbol: str) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    bids, asks = market.instrument(symbol).book.l2(L2_DEPTH)
    return [(price(p), q) for p, q in bids], [(price(p), q) for p, q in asks]


def server_l3(market: Market, symbol: str, side: Side) -> list[tuple[int, str, int]]:
    bids, asks = market.instrument(symbol).book.l3()
    return [
        (o.order_id, price(o.price_ticks), o.leaves_units) for o in (bids if side is BUY else asks)
    ]


class Subscriber:
    """What a client holds for each symbol: books, trades, status, ticker, from the messages."""

    def __init__(self, symbols: tuple[str, ...], lossy: random.Random | None = None) -> None:
        self.l2 = {symbol: LocalBook(symbol) for symbol in symbols}
        self.l3 = {symbol: LocalOrderBook(symbol) for symbol in symbols}
        self.trades: dict[str, list[Any]] = {symbol: [] for symbol in symbols}
        self.status: dict[str, list[Status]] = {symbol: [] for symbol in symbols}
        self.ticker: dict[str, Ticker] = {}
        self.seqs: dict[tuple[str, str], int] = {}
        self.lossy = lossy  # Drops updates of book.l2 and book.l3 at random when set.
        self.dropped: set[tuple[str, str]] = set()  # Lost, not yet noticed.
        self.gaps_forced = self.gaps_at_update = self.gaps_at_heartbeat = self.resyncs = 0

    def subscribe(self, data: MarketData, symbol: str) -> None:
        for channel in CHANNELS:
            self.receive(data.snapshot(channel, symbol))

    def receive(self, message: Message) -> None:
        if isinstance(message, Heartbeat):
            self._heartbeat(message)
            return
        key = (channel_of(message), message.symbol)
        if isinstance(message, BookL2 | BookL3):
            if self._lose(key, message):
                return
            book = self.l2 if isinstance(message, BookL2) else self.l3
            in_sync = book[message.symbol].apply(message)  # type: ignore[arg-type]
            if key in self.dropped:
                assert not in_sync and "gap" in book[message.symbol].problem
                self.gaps_at_update += 1
                self.dropped.discard(key)
            else:
                assert in_sync, book[message.symbol].problem
            return
        # The other channels are lossless here: check their seq chain directly.
        if message.type == "update":
            assert message.prev_seq == self.seqs[key], f"{key}: gap in a lossless channel"
            assert message.seq == message.prev_seq + 1
        self.seqs[key] = message.seq
        if isinstance(message, Trades):
            if message.type == "update":
                self.trades[message.symbol] += message.trades
        elif isinstance(message, Status):
            self.status[message.symbol].append(message)
        elif isinstance(message, Ticker):
            self.ticker[message.symbol] = message

    def _lose(self, key: tuple[str, str], message: BookL2 | BookL3) -> bool:
        if self.lossy is None or message.type == "snapshot" or key in self.dropped:
            return False
        if self.lossy.randrange(1000) >= DROP_PER_MILLE:
            return False
        self.dropped.add(key)
        self.gaps_forced += 1
        return True

    def _heartbeat(self, heartbeat: Heartbeat) -> None:
        for books in (self.l2, self.l3):
            book = books[heartbeat.symbol]
            key = (book.channel, heartbeat.symbol)
            was_in_sync = book.in_sync
            in_sync = book.check_heartbeat(heartbeat)
            if key in self.dropped and was_in_sync:
                assert not in_sync, f"{key}: the heartbeat did not reveal a lost update"
                self.gaps_at_heartbeat += 1
                self.dropped.discard(key)
            else:
                assert in_sync == was_in_sync

    def resync(self, data: MarketData) -> None:
        """Resubscribe every book that knows it is out of sync; it must then be in sync."""
        for books, channel in ((self.l2, L2), (self.l3, L3)):
            for symbol, book in books.items():
                if not book.in_sync:
                    book.apply(data.snapshot(channel, symbol))  # type: ignore[arg-type]
                    assert book.in_sync, book.problem
                    self.resyncs += 1


class FedMarket(Market):
    """A market whose every outcome goes through MarketData to two subscribers."""

    def __init__(self, symbols: tuple[str, ...] = SYMBOLS, seed: int = 0) -> None:
        super().__init__()
        self.symbols = symbols
        self.data = MarketData(self.exchange)
        self.exact = Subscriber(symbols)
        self.lossy = Subscriber(symbols, random.Random(seed))
        self.outcomes: list[Outcome] = []
        self.messages: list[Message] = []
        self.subscribed = False
        self.deep_steps = 0  # Steps after which a side of a book had more than L2_DEPTH levels.
        self.orders_max = 0
        self.data_ns = 0  # Time spent in MarketData.on_outcome.

    def do(self, command: Command, after_ns: int = 1) -> Outcome:
        outcome = super().do(command, after_ns)
        self.outcomes.append(outcome)
        started = time.perf_counter_ns()
        messages = self.data.on_outcome(outcome)
        self.data_ns += time.perf_counter_ns() - started
        for message in messages:
            assert decode(encode(message)) == message, "a message did not round-trip"
        self.messages += messages
        if self.subscribed:
            for message in messages:
                self.exact.receive(message)
                self.lossy.receive(message)
            self.lossy.resync(self.data)
        return outcome

    def subscribe(self) -> None:
        for symbol in self.symbols:
            self.exact.subscribe(self.data, symbol)
            self.lossy.subscribe(self.data, symbol)
        self.subscribed = True

    def heartbeats(self) -> None:
        for symbol in self.symbols:
            heartbeat = self.data.heartbeat(symbol, self.ts_ns)
            assert decode(encode(heartbeat)) == heartbeat
            self.exact.receive(heartbeat)
            self.lossy.receive(heartbeat)
        self.lossy.resync(self.data)

    def check_subscribers(self) -> None:
        """Each subscriber's books equal the server's, at the server's seq."""
        for symbol in self.symbols:
            bids, asks = server_l2(self, symbol)
            for subscriber in (self.exact, self.lossy):
                # A lost update not yet noticed leaves a stale book: that is what seqs find.
                if (L2, symbol) not in subscriber.dropped:
                    local = subscriber.l2[symbol]
                    assert local.seq == self.data.seq(L2, symbol)
                    assert (local.bids(), local.asks()) == (bids, asks), f"{symbol} L2 differs"
                    assert local.checksum() == checksum(bids, asks)
                if (L3, symbol) not in subscriber.dropped:
                    l3 = subscriber.l3[symbol]
                    assert l3.seq == self.data.seq(L3, symbol)
                    for side in (BUY, SELL):
                        assert l3.orders(side) == server_l3(self, symbol, side), f"{symbol} L3"
            status = self.exact.status[symbol][-1]
            instrument = self.instrument(symbol)
            assert status.phase is instrument.phase
            assert status.until_ts_ns == instrument.phase_until_ns
            assert (status.indicative_volume_units, status.indicative_imbalance_units) == (
                instrument.indicative[1:]
            )
            ticker = self.exact.ticker[symbol]
            best_bid, best_ask = instrument.book.best_bid(), instrument.book.best_ask()
            assert (ticker.best_bid, ticker.best_bid_units) == (
                (price(best_bid[0]), best_bid[1]) if best_bid else (None, 0)
            )
            assert (ticker.best_ask, ticker.best_ask_units) == (
                (price(best_ask[0]), best_ask[1]) if best_ask else (None, 0)
            )
            assert ticker.last_price == (
                price(instrument.last_price_ticks) if instrument.last_price_ticks else None
            )
            assert (ticker.volume_units, ticker.trade_count) == (
                instrument.volume_units,
                instrument.trade_count,
            )


def two_instruments(seed: int = 0) -> FedMarket:
    """Two instruments in continuous trading; every investor holds units of both."""
    market = FedMarket(SYMBOLS, seed)
    market.trading()
    accepted_reply(market.do(listing(OTHER_PATENT)))
    accepted_reply(market.do(issuance(OTHER_SYMBOL, OTHER_PATENT, reference_price_ticks=500)))
    market.open_trading(OTHER_SYMBOL)
    for symbol, reference in ((SYMBOL, 1_000), (OTHER_SYMBOL, 500)):
        for account in INVESTORS:
            market.sell(ISSUER, 400, reference, symbol=symbol)
            market.buy(account, 400, reference, symbol=symbol)
    return market


def random_command(market: FedMarket, rng: random.Random) -> Command | None:
    symbol = rng.choice(SYMBOLS)
    account = rng.choice((*INVESTORS, ISSUER))
    roll = rng.random()
    reference = market.instrument(symbol).reference_price_ticks
    if roll < 0.70:
        order_type = MARKET if rng.random() < 0.05 else LIMIT
        tif = rng.choice((IOC, FOK) if order_type is MARKET else (*(GTC,) * 8, IOC, DAY, GTD))
        side = rng.choice((BUY, SELL))
        # Mostly passive prices across the static band (deep books, more than 50 levels),
        # sometimes aggressive ones (trades, and volatility auctions past the dynamic band).
        distance = rng.randint(0, rng.choice((5, 20, 60, 95)) * reference // 1_000)
        if (side is BUY) == (rng.random() < 0.8):
            distance = -distance
        return market.order(
            account,
            side,
            rng.randint(1, 10),
            0 if order_type is MARKET else reference + distance,
            symbol=symbol,
            order_type=order_type,
            tif=tif,
            post_only=tif is GTC and rng.random() < 0.05,
            stp=rng.choice(tuple(StpMode)),
            expire_ts_ns=market.ts_ns + rng.randint(1, 600) * SECOND if tif is GTD else 0,
        )
    open_ids = market.open_orders(account)
    if roll < 0.74:
        return CancelOrder(account, rng.choice(open_ids)) if open_ids else None
    if roll < 0.86:
        if not open_ids:
            return None
        order = market.exchange.state.orders[rng.choice(open_ids)]
        quantity = max(1, order.quantity_units + rng.randint(-5, 5))
        new_price = order.price_ticks + (rng.randint(-5, 5) if rng.random() < 0.5 else 0)
        return AmendOrder(account, new_price, quantity, order.order_id)
    if roll < 0.861:
        return CancelAll(account, account)
    if roll < 0.87 or market.phase(symbol) is Phase.HALTED:
        return rng.choice(
            (
                Halt(OPERATOR, symbol),
                Resume(OPERATOR, symbol),
                Resume(OPERATOR, symbol),
                StartAuction(OPERATOR, symbol, rng.randint(1, 60) * SECOND),
            )
        )
    return None  # Let time pass.


def run_session(seed: int, steps: int) -> FedMarket:
    rng = random.Random(seed)
    market = two_instruments(seed)
    market.subscribe()
    market.check_subscribers()
    late: MarketData | None = None
    started = time.process_time()
    for step in range(steps):
        command = random_command(market, rng)
        if step in (steps // 4, steps * 3 // 4):
            command = Halt(OPERATOR, SYMBOLS[step * 4 // steps // 2])  # At least one halt each.
        if command is None:
            market.tick(rng.choice((SECOND, 30 * SECOND, 10 * 60 * SECOND) * 5 + (13 * HOUR,)))
        else:
            market.do(command, rng.randint(1, 5 * SECOND))
        if late is not None:
            late.on_outcome(market.outcomes[-1])
        for symbol in SYMBOLS:
            book = market.instrument(symbol).book
            levels = max(len(book.l2(L2_DEPTH + 1)[0]), len(book.l2(L2_DEPTH + 1)[1]))
            market.deep_steps += levels > L2_DEPTH
            market.orders_max = max(market.orders_max, len(book))
        if step % HEARTBEAT_EVERY_STEPS == 0:
            market.heartbeats()
        market.check_subscribers()
        if step == steps // 2:
            late = MarketData(market.exchange)  # As after a restart from the journal.
            restarted = MarketData(Exchange.from_snapshot(market.exchange.snapshot()))
            for symbol in SYMBOLS:
                for channel in (L2, L3, TICKER, STATUS, TRADES):
                    fresh = restarted.snapshot(channel, symbol)
                    old = market.data.snapshot(channel, symbol)
                    assert _body(fresh) == _body(old), f"a restart changes {channel}"
    market.heartbeats()  # Reveals a loss in the last steps.
    print(f"market data: {steps} steps, {len(market.messages)} messages, "
          f"{time.process_time() - started:.1f} s process time; most orders in a book "
          f"{market.orders_max}, steps with a side over {L2_DEPTH} levels "
          f"{market.deep_steps}; on_outcome mean "
          f"{market.data_ns / len(market.outcomes) / 1_000:.1f} us")  # fmt: skip
    assert late is not None
    for symbol in SYMBOLS:
        for channel in (L2, L3, TICKER, STATUS, TRADES):
            fresh, old = late.snapshot(channel, symbol), market.data.snapshot(channel, symbol)
            assert _body(fresh) == _body(old), f"a late MarketData disagrees on {channel}"
    return market


def _body(message: Message) -> dict[str, Any]:
    # A message without its seq numbers (which count from the MarketData's start).
    fields = msgspec.structs.asdict(message)
    for name in ("seq", "prev_seq", "journal_seq", "ts_ns"):
        fields.pop(name, None)
    return fields


@pytest.mark.slow
@pytest.mark.parametrize("offset", range(2))
def test_a_random_session_rebuilds_every_book_from_snapshot_and_updates(offset: int) -> None:
    seed = BASE_SEED + offset
    print(f"market data session: IPX_SEED={BASE_SEED} run seed={seed} steps={STEPS}")
    market = run_session(seed, STEPS)
    lossy = market.lossy
    print(
        f"gaps forced {lossy.gaps_forced}, detected at the next update {lossy.gaps_at_update}, "
        f"at a heartbeat {lossy.gaps_at_heartbeat}, unnoticed {len(lossy.dropped)}; "
        f"resyncs {lossy.resyncs}"
    )
    assert market.deep_steps > 0, "no book grew past the published depth"
    assert lossy.gaps_forced >= 10, "the session forced too few gaps to test anything"
    assert lossy.gaps_forced == lossy.gaps_at_update + lossy.gaps_at_heartbeat + len(lossy.dropped)
    assert lossy.resyncs == lossy.gaps_at_update + lossy.gaps_at_heartbeat
    # Every trade printed, in order, once; every phase change on status, in order.
    for symbol in SYMBOLS:
        printed = [
            (e.trade_id, price(e.price_ticks), e.quantity_units, e.aggressor_side)
            for o in market.outcomes
            for e in o.events
            if isinstance(e, TradeExecuted) and e.symbol == symbol
        ]
        seen = [
            (t.trade_id, t.price, t.quantity_units, t.aggressor_side)
            for m in market.messages
            if isinstance(m, Trades) and m.symbol == symbol
            for t in m.trades
        ]
        assert seen == printed and printed, f"{symbol}: trades channel differs from the prints"
        assert [(t[0], t[1], t[2], t[3]) for t in seen[-len(market.exact.trades[symbol]) :]] == [
            (t.trade_id, t.price, t.quantity_units, t.aggressor_side)
            for t in market.exact.trades[symbol]
        ]
        changes = [
            (e.phase, e.reason, e.until_ts_ns)
            for o in market.outcomes
            for e in o.events
            if isinstance(e, PhaseChanged) and e.symbol == symbol
        ]
        published = [
            (m.phase, m.reason, m.until_ts_ns)
            for m in market.messages
            if isinstance(m, Status) and m.symbol == symbol and m.event is StatusEvent.PHASE_CHANGED
        ]
        assert published == changes, f"{symbol}: status differs from the phase changes"
        assert Phase.HALTED in [phase for phase, _, _ in changes], "no halt in the session"
        statuses = sum(
            isinstance(e, PhaseChanged | IndicativeUpdated | AuctionUncrossed)
            and e.symbol == symbol
            for o in market.outcomes
            for e in o.events
        )
        assert statuses == sum(
            isinstance(m, Status) and m.symbol == symbol for m in market.messages
        )


def test_a_short_session_without_the_slow_mark() -> None:
    seed = BASE_SEED + 7
    print(f"market data short session: IPX_SEED={BASE_SEED} run seed={seed}")
    run_session(seed, 300)


# The rules one by one, on the standard instrument.


def fed_market() -> FedMarket:
    market = FedMarket((SYMBOL,))
    market.trading()
    market.subscribe()
    return market


def last(market: FedMarket, kind: type[Any], symbol: str = SYMBOL) -> Any:
    found = [m for m in market.messages if isinstance(m, kind) and m.symbol == symbol]
    assert found, f"no {kind.__name__} message"
    return found[-1]


def test_decimal_text_writes_minor_units_exactly() -> None:
    assert decimal_text(1_050, 2) == "10.50"
    assert decimal_text(5, 2) == "0.05"
    assert decimal_text(0, 2) == "0.00"
    assert decimal_text(7, 0) == "7"
    assert decimal_text(1_234, 3) == "1.234"
    assert decimal_text(-5, 2) == "-0.05"
    assert decimal_text(10**30 + 1, 2) == "10000000000000000000000000000.01"


def test_the_checksum_is_the_documented_crc32() -> None:
    assert checksum([("10.10", 5), ("10.00", 7)], [("10.20", 3)]) == 3620691252
    assert checksum([], []) == zlib.crc32(b"|")
    many = [(price(p), 1) for p in range(1_000, 980, -1)]
    assert checksum(many, []) == checksum(many[:10], []), "only the top 10 levels count"


def test_an_update_has_the_documented_wire_shape() -> None:
    market = fed_market()
    market.buy("alice", 5, 990)
    wire = json.loads(encode(last(market, BookL2)))
    assert wire["channel"] == "book.l2" and wire["type"] == "update"
    assert wire["symbol"] == SYMBOL
    assert wire["prev_seq"] == wire["seq"] - 1
    assert wire["bids"] == [["99.00", 5]] and wire["asks"] == []
    snapshot = json.loads(encode(market.data.snapshot(L2, SYMBOL)))
    assert snapshot["type"] == "snapshot" and "prev_seq" not in snapshot
    assert snapshot["seq"] == wire["seq"]


def test_quantities_are_absolute_and_zero_deletes_a_level() -> None:
    market = fed_market()
    first = accepted(market.buy("alice", 5, 990))
    market.buy("bob", 3, 990)
    assert last(market, BookL2).bids == [("99.00", 8)]
    market.cancel("alice", first)
    assert last(market, BookL2).bids == [("99.00", 3)]
    market.sell("carol", 3, 990)  # carol has no units: rejected, nothing published.
    market.give_units("carol", 3)
    before = market.data.seq(L2, SYMBOL)
    market.sell("carol", 3, 990)
    update = last(market, BookL2)
    assert update.seq == before + 1 and update.bids == [("99.00", 0)]


def test_levels_entering_and_leaving_the_top_50_are_published() -> None:
    market = fed_market()
    ids = [accepted(market.buy("alice", 1, p)) for p in range(950, 1_001)]  # 51 levels.
    snapshot = market.data.snapshot(L2, SYMBOL)
    assert len(snapshot.bids) == L2_DEPTH and snapshot.bids[-1] == ("95.10", 1)  # type: ignore[union-attr]
    market.cancel("alice", ids[-1])  # The best bid leaves; 9.50 enters the top 50.
    assert last(market, BookL2).bids == [("100.00", 0), ("95.00", 1)]
    market.buy("bob", 2, 1_000)  # A new best bid pushes 9.50 out again.
    assert last(market, BookL2).bids == [("100.00", 2), ("95.00", 0)]
    market.check_subscribers()


def test_trades_and_ticker_follow_a_trade() -> None:
    market = fed_market()
    market.give_units("bob", 10)
    trades_before = len([m for m in market.messages if isinstance(m, Trades)])
    market.sell("bob", 10, 1_010)
    market.buy("alice", 4, 1_010)
    trades = [m for m in market.messages if isinstance(m, Trades)]
    assert len(trades) == trades_before + 1
    (trade,) = trades[-1].trades
    assert (trade.price, trade.quantity_units, trade.aggressor_side) == ("101.00", 4, Side.BUY)
    ticker = last(market, Ticker)
    assert (ticker.last_price, ticker.best_ask, ticker.best_ask_units) == ("101.00", "101.00", 6)
    assert ticker.best_bid is None
    assert market.data.snapshot(TRADES, SYMBOL).trades[-1] == trade  # type: ignore[union-attr]
    market.check_subscribers()


def test_l3_keeps_priority_on_a_reduction_and_requeues_on_an_increase() -> None:
    market = fed_market()
    first = accepted(market.buy("alice", 5, 990))
    accepted(market.buy("bob", 5, 990))
    market.amend("alice", first, 3, 990)
    (entry,) = last(market, BookL3).orders
    assert (entry.action, entry.order_id, entry.quantity_units) == (L3Action.UPDATE, first, 3)
    market.amend("alice", first, 6, 990)
    actions = [(e.action, e.order_id, e.quantity_units) for e in last(market, BookL3).orders]
    assert actions == [(L3Action.DELETE, first, 0), (L3Action.ADD, first, 6)]
    assert [o[0] for o in market.exact.l3[SYMBOL].orders(BUY)][-1] == first
    market.check_subscribers()


def test_status_reports_a_halt_and_the_reopening_auction() -> None:
    market = fed_market()
    market.halt()
    assert last(market, Status).phase is Phase.HALTED
    market.do(Resume(OPERATOR, SYMBOL))
    market.sell(ISSUER, 5, 1_000)
    market.buy("alice", 5, 1_000)
    status = last(market, Status)
    assert (status.event, status.phase) == (StatusEvent.INDICATIVE_UPDATED, Phase.AUCTION)
    assert (status.indicative_price, status.indicative_volume_units) == ("100.00", 5)
    market.tick_to(market.instrument().phase_until_ns)
    events = [m.event for m in market.messages if isinstance(m, Status)][-3:]
    assert events == [
        StatusEvent.AUCTION_UNCROSSED,
        StatusEvent.INDICATIVE_UPDATED,
        StatusEvent.PHASE_CHANGED,
    ]
    status = last(market, Status)
    assert (status.phase, status.auction_price, status.auction_volume_units) == (
        Phase.CONTINUOUS,
        "100.00",
        5,
    )
    assert status.indicative_price is None
    uncrossed = [m for m in market.messages if isinstance(m, Status)][-3]
    assert uncrossed.uncross_volume_units == 5 and status.uncross_volume_units == 0
    # A later auction that trades nothing says so, though auction_* still tell the last uncross
    # that traded (the dashboard's feed showed it as this auction's trade).
    market.halt()
    market.do(Resume(OPERATOR, SYMBOL))
    market.tick_to(market.instrument().phase_until_ns)
    empty = [
        m
        for m in market.messages
        if isinstance(m, Status) and m.event is StatusEvent.AUCTION_UNCROSSED
    ][-1]
    assert empty.seq > uncrossed.seq and empty.uncross_volume_units == 0
    assert (empty.auction_price, empty.auction_volume_units) == ("100.00", 5)
    market.check_subscribers()


def test_a_heartbeat_carries_every_channels_latest_seq() -> None:
    market = fed_market()
    market.buy("alice", 5, 990)
    heartbeat = market.data.heartbeat(SYMBOL, market.ts_ns)
    assert heartbeat.channels == {c: market.data.seq(c, SYMBOL) for c in CHANNELS}
    assert heartbeat.seq == market.exchange.seq
    assert json.loads(encode(heartbeat))["channel"] == HEARTBEAT
    with pytest.raises(KeyError):
        market.data.heartbeat("RS-NOPE", 0)
    with pytest.raises(KeyError):
        market.data.snapshot(HEARTBEAT, SYMBOL)


def test_status_snapshot_of_a_new_market_data_reads_the_exchange() -> None:
    market = fed_market()
    market.halt()
    fresh = MarketData(market.exchange)
    snapshot = fresh.snapshot(STATUS, SYMBOL)
    assert isinstance(snapshot, Status) and snapshot.phase is Phase.HALTED
    assert snapshot.seq == 0 and snapshot.event is StatusEvent.SNAPSHOT
    assert snapshot.ts_ns == market.exchange.state.last_ts_ns  # Not 0 (1970) after a restart.


def test_the_messages_have_one_json_schema_keyed_by_channel() -> None:
    schema = msgspec.json.schema(Message)
    mapping = schema["discriminator"]["mapping"]
    assert schema["discriminator"]["propertyName"] == "channel"
    assert sorted(mapping) == sorted((*CHANNELS, HEARTBEAT))
