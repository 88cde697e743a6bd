"""What the exchange keeps for the trading day costs the garbage collector nothing.

The gateway's full garbage collections scan every object the collector tracks, on the event
loop: when each command kept for idempotency was tracked, one took 46 ms (BENCHMARKS.md,
"A seventh check"). Orders, idempotency records, commands and events hold only strings, ints,
enum members and tuples of them, so they cannot be in a reference cycle: they are declared
untracked (msgspec's gc=False), and these rules keep them so.
"""

from __future__ import annotations

import gc
import typing
from collections.abc import Iterator

import pytest

from exchange.commands import CancelOrder, Command
from exchange.events import Event
from tests.exchange import rulebook
from tests.exchange.rulebook import INVESTORS, Market


@pytest.fixture
def market() -> Iterator[Market]:
    yield from rulebook.checked_market()


def test_every_command_and_event_type_is_untracked() -> None:
    kinds = [*typing.get_args(Command), *typing.get_args(Event)]
    assert len(kinds) > 20
    assert [kind for kind in kinds if kind.__struct_config__.gc] == []


def test_orders_and_what_idempotency_keeps_of_them_are_untracked(market: Market) -> None:
    market.trading()
    buyer, seller = INVESTORS[0], INVESTORS[1]
    market.sell(seller, 10, 1_000)
    market.buy(buyer, 4, 1_000)  # Trades 4, leaves 6 resting.
    resting = market.buy(buyer, 5, 990)
    market.do(CancelOrder(buyer, cl_ord_id=resting.reply.cl_ord_id))  # type: ignore[union-attr]
    market.buy(buyer, 0, 990)  # Rejected: remembered too.
    state = market.exchange.state
    kept = [
        *state.orders.values(),
        *state.finished_orders.values(),
        *state.client_orders.values(),
        *(client.command for client in state.client_orders.values()),
        *(client.reply for client in state.client_orders.values()),
    ]
    assert len(state.client_orders) == 4 and state.orders and state.finished_orders
    assert [kept_object for kept_object in kept if gc.is_tracked(kept_object)] == []
