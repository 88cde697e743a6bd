"""Books on demand: a book nobody follows costs nothing, and is exact again once watched.

Rules:
- With books_on_demand, an unwatched symbol's outcomes give no book.l2 or book.l3 update (and
  its seqs stay put); trades, ticker and status are exactly what an always-on MarketData gives.
- Once watched, its snapshots equal an always-on MarketData's (bar the seq numbers), and every
  update after them is the same change, so a subscriber from the snapshot holds the server's
  book at every step, checksum included.
- Unwatched again, then watched again: the same holds (the book is reloaded, not replayed).
"""

from __future__ import annotations

import random
from typing import Any

import msgspec

from gateway.local_book import LocalBook
from gateway.market_data import L2, L3, BookL2, BookL3, MarketData, Message
from tests.gateway.test_market_data import (
    BASE_SEED,
    SYMBOLS,
    random_command,
    server_l2,
    two_instruments,
)

WATCHED, UNWATCHED = SYMBOLS


def _body(message: Message) -> dict[str, Any]:
    fields = msgspec.structs.asdict(message)
    for name in ("seq", "prev_seq"):
        fields.pop(name, None)
    return fields


def test_an_unwatched_book_is_skipped_and_exact_again_once_watched() -> None:
    seed = BASE_SEED + 11
    print(f"books on demand: IPX_SEED={BASE_SEED} run seed={seed}")
    rng = random.Random(seed)
    market = two_instruments(seed)  # market.data follows every book.
    lazy = MarketData(market.exchange, books_on_demand=True)
    lazy.watch_books(WATCHED)
    books: dict[str, LocalBook] = {}

    def step() -> tuple[list[Message], list[Message]]:
        command = random_command(market, rng)
        seen = len(market.messages)
        if command is None:
            market.tick(rng.choice((1, 30)) * 1_000_000_000)
        else:
            market.do(command, rng.randint(1, 5_000_000_000))
        return market.messages[seen:], lazy.on_outcome(market.outcomes[-1])

    def watch(symbol: str) -> None:
        lazy.watch_books(symbol)
        for channel in (L2, L3):
            assert _body(lazy.snapshot(channel, symbol)) == _body(
                market.data.snapshot(channel, symbol)
            ), f"{channel} snapshot of {symbol} differs after watching"
        book = books[symbol] = LocalBook(symbol)
        assert book.apply(lazy.snapshot(L2, symbol))  # type: ignore[arg-type]

    books[WATCHED] = LocalBook(WATCHED)
    assert books[WATCHED].apply(lazy.snapshot(L2, WATCHED))  # type: ignore[arg-type]
    for round_number in range(3):
        frozen = (lazy.seq(L2, UNWATCHED), lazy.seq(L3, UNWATCHED))
        for _ in range(150):
            eager, mine = step()
            skipped = [m for m in eager if isinstance(m, BookL2 | BookL3) and m.symbol == UNWATCHED]
            assert [_body(m) for m in mine] == [_body(m) for m in eager if m not in skipped]
            for message in mine:
                if isinstance(message, BookL2) and message.symbol in books:
                    assert books[message.symbol].apply(message), books[message.symbol].problem
        assert (lazy.seq(L2, UNWATCHED), lazy.seq(L3, UNWATCHED)) == frozen
        watch(UNWATCHED)
        for _ in range(150):
            eager, mine = step()
            assert [_body(m) for m in mine] == [_body(m) for m in eager]
            for message in mine:
                if isinstance(message, BookL2):
                    assert books[message.symbol].apply(message), books[message.symbol].problem
            book = books[UNWATCHED]
            assert (book.bids(), book.asks()) == server_l2(market, UNWATCHED), round_number
        lazy.unwatch_books(UNWATCHED)
        del books[UNWATCHED]
