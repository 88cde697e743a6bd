"""The gateway's own account views: the bounded fill log and the royalty arithmetic.

Rules:
- The fill log answers in pages of at most `limit` fills, oldest first; `next` is the cursor
  to pass as `after` for the page that follows, None on the last page. A fill recorded during
  a walk comes in a later page; a walk whose cursor fell behind the oldest fill kept carries
  on from the oldest (and the answer says `truncated`).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from exchange.calendar import NS_PER_DAY
from exchange.core import Outcome
from exchange.events import Liquidity, OrderFilled
from gateway import accounts
from ledger.records import RecordBody
from matching.orders import Side

DAY = 20_000 * NS_PER_DAY  # Some UTC day.


def _fill(seq: int, ts_ns: int, account: str, trade_id: int) -> Outcome:
    event = OrderFilled(
        account, "SYM", f"c{trade_id}", 7, trade_id, Side.BUY, 1000, 1, 1, 0, Liquidity.TAKER, 3
    )
    return Outcome(seq, ts_ns, event, [event], RecordBody(seq, ts_ns, "place_order", b"", ()))


def _state() -> Any:
    terms = SimpleNamespace(currency="USD", tick_size_minor=10)
    return SimpleNamespace(instruments={"SYM": SimpleNamespace(terms=terms)})


def test_the_fill_log_keeps_the_latest_fills_of_one_day_per_account() -> None:
    log = accounts.FillLog(next_seq=5, per_account_max=2)
    log.record([_fill(5, DAY + 1, "alice", 1), _fill(6, DAY + 2, "bob", 2)])
    log.record([_fill(7, DAY + 3, "alice", 3), _fill(8, DAY + 4, "alice", 4)])
    alices = log.view(_state(), "alice", "")
    assert [fill["trade_id"] for fill in alices["fills"]] == [3, 4]  # The oldest dropped.
    assert (alices["truncated"], alices["complete_from_seq"]) == (True, 5)
    assert alices["fills"][0]["price"] == "100.00"
    assert log.view(_state(), "bob", "")["truncated"] is False
    log.record([_fill(9, DAY + NS_PER_DAY, "bob", 5)])  # A new trading day.
    assert log.view(_state(), "alice", "") == {
        "account": "alice",
        "fills": [],
        "complete_from_seq": 9,
        "truncated": False,
        "next": None,
    }
    assert [fill["trade_id"] for fill in log.view(_state(), "bob", "")["fills"]] == [5]


def _trade_ids(page: dict[str, Any]) -> list[int]:
    return [fill["trade_id"] for fill in page["fills"]]


def test_the_fill_log_answers_in_pages_and_a_walk_misses_nothing() -> None:
    log = accounts.FillLog(next_seq=1, per_account_max=5)
    log.record([_fill(seq, DAY + seq, "alice", trade_id=seq) for seq in range(1, 5)])
    first = log.view(_state(), "alice", "", limit=3)
    assert (_trade_ids(first), first["truncated"]) == ([1, 2, 3], False)
    log.record([_fill(5, DAY + 5, "alice", trade_id=5)])  # Recorded during the walk.
    last = log.view(_state(), "alice", "", limit=3, after=first["next"])
    assert (_trade_ids(last), last["next"]) == ([4, 5], None)
    assert log.view(_state(), "alice", "", limit=5)["next"] is None  # Exactly a page.
    # Three more: the two oldest (1, 2) are dropped; a cursor behind them goes on from 3.
    log.record([_fill(seq, DAY + seq, "alice", trade_id=seq) for seq in range(6, 8)])
    behind = log.view(_state(), "alice", "", limit=2, after=first["next"] - 2)
    assert (_trade_ids(behind), behind["truncated"]) == ([3, 4], True)
    assert _trade_ids(log.view(_state(), "alice", "", after=behind["next"])) == [5, 6, 7]
    assert log.view(_state(), "alice", "", after=10**6)["fills"] == []  # Past the newest.
    assert log.view(_state(), "alice", "OTHER")["fills"] == []


def _instrument(last_price_ticks: int, periods: list[tuple[int, int]]) -> Any:
    terms = SimpleNamespace(currency="USD", total_units=3_000, tick_size_minor=10)
    royalties = {
        str(index): SimpleNamespace(amount_minor=amount, ts_ns=ts_ns)
        for index, (amount, ts_ns) in enumerate(periods)
    }
    return SimpleNamespace(terms=terms, royalties=royalties, last_price_ticks=last_price_ticks)


def test_trailing_royalties_count_twelve_months_and_round_down() -> None:
    now = DAY
    instrument = _instrument(
        last_price_ticks=1_000,  # 100.00
        periods=[
            (100_000, now - 366 * NS_PER_DAY),  # 1,000.00 more than a year ago: not counted.
            (100_000, now - 365 * NS_PER_DAY + 1),
            (33_333, now),
        ],
    )
    figures = accounts.trailing_royalties(instrument, now)
    assert figures["ttm_royalties"] == "1333.33"
    # 1,333.33 / 3,000 units = 0.44444333... per unit: 8 decimals, rounded down.
    assert figures["ttm_royalties_per_unit"] == "0.44444333"
    # 0.444443... / 100.00 = 0.444443...%: 4 decimals, rounded down.
    assert figures["ttm_yield_percent_at_last_price"] == "0.4444"
    assert figures["distributions"] == 3
    no_trade = accounts.trailing_royalties(_instrument(0, []), now)
    assert no_trade["ttm_yield_percent_at_last_price"] is None
    assert no_trade["ttm_royalties_per_unit"] == "0.00000000"
