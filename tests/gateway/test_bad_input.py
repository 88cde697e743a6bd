"""Bad input at scale: ten thousand hostile frames, and the market is exactly as it was.

Every frame is answered with a typed error (or, for the frames that must end a connection,
the right close code), the server never fails, and the balances, books and open orders are
unchanged. The exchange's full state_hash() is NOT compared: the frames the core itself must
judge (a price outside the band, shares the account does not have) are rejected by the core
and those rejections are journaled, which advances seq, the clock and
the day's client-order table; so the test compares a digest of balances, books and open orders
instead, and checks that every command that reached the core during the run was rejected.
A cancel of someone else's order is refused at the edge (404, as if it did not exist) and
never reaches the core.

Replay a run with IPX_TEST_SEED=<seed> (printed); IPX_BAD_FRAMES sets how many frames.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from exchange.core import Exchange, Outcome
from exchange.events import CommandRejected, OrderRejected
from gateway import protocol
from gateway.server import RunningServer, run_server
from tests.gateway.conftest import SYMBOL, Venue, list_the_market, sessions_ended

pytestmark = pytest.mark.asyncio

FRAMES = int(os.environ.get("IPX_BAD_FRAMES", "10000"))
BATCH = 48  # Frames sent before their answers are read (below the server's in-flight limit).
ANSWER_TIMEOUT_S = 10.0
VALIDATION = {"VALIDATION_ERROR"}
CORE_REFUSALS = {"PRICE_BAND", "INSUFFICIENT_SHARES", "INSUFFICIENT_BALANCE", "UNKNOWN_ORDER"}


@dataclass(frozen=True)
class Bad:
    kind: str
    frame: str | bytes
    answer_id: str | None  # The id the answer must carry (None: the frame had no readable id).
    codes: set[str]  # Acceptable error codes.
    close_code: int = 0  # The connection must be closed with this code instead of an answer.
    text: bool = True  # Sent as a text frame (bytes that are not UTF-8 included).


class Generator:
    def __init__(self, rng: random.Random, victim_order_id: int) -> None:
        self.rng = rng
        self.victim_order_id = victim_order_id  # The issuer's order, which alice must not see.
        self.ids = iter(range(1, 10**9))
        self.kinds: list[tuple[str, int, Callable[[], Bad]]] = [
            ("invalid_json", 12, self.invalid_json),
            ("wrong_type", 14, self.wrong_type),
            ("unknown_field", 8, self.unknown_field),
            ("unknown_method", 6, self.unknown_method),
            ("bad_quantity", 14, self.bad_quantity),
            ("off_tick_price", 10, self.off_tick_price),
            ("non_numeric_price", 12, self.non_numeric_price),
            ("binary_frame", 5, self.binary_frame),
            ("core_refusal", 5, self.core_refusal),
            ("foreign_cancel", 1, self.foreign_cancel),
            ("oversized_frame", 1, self.oversized_frame),
            ("invalid_utf8", 1, self.invalid_utf8),
            ("deeply_nested", 2, self.deeply_nested),
            ("before_logon", 2, self.before_logon),
        ]

    def next(self) -> Bad:
        weights = [weight for _, weight, _ in self.kinds]
        _, _, make = self.rng.choices(self.kinds, weights)[0]
        return make()

    def _id(self) -> str:
        return f"b{next(self.ids)}"

    def _order(self, **changes: Any) -> dict[str, Any]:
        params: dict[str, Any] = {
            "symbol": SYMBOL,
            "cl_ord_id": f"bad-{next(self.ids)}",
            "side": "buy",
            "quantity": 1,
            "price": "99.00",
        }
        params.update(changes)
        return params

    def _request(self, kind: str, method: str, params: Any, codes: set[str]) -> Bad:
        request_id = self._id()
        frame = json.dumps({"id": request_id, "method": method, "params": params})
        return Bad(kind, frame, request_id, codes)

    def invalid_json(self) -> Bad:
        good = json.dumps({"id": self._id(), "method": "order.place", "params": self._order()})
        frame = self.rng.choice(
            [
                good[: self.rng.randrange(1, len(good) - 1)],  # Truncated.
                good.replace(":", "=", 1),
                "{" * self.rng.randrange(1, 200),
                "".join(chr(self.rng.randrange(32, 0x3000)) for _ in range(30)),
                "[]",
                "null",
                '"order.place"',
                "",
            ]
        )
        return Bad("invalid_json", frame, None, VALIDATION)

    def wrong_type(self) -> Bad:
        field, value = self.rng.choice(
            [
                ("symbol", 5),
                ("side", "up"),
                ("side", 1),
                ("post_only", "yes"),
                ("price", 99),
                ("price", 99.5),
                ("cl_ord_id", ["x"]),
                ("time_in_force", "forever"),
                ("type", None),
                ("expire_ts_ns", -1),
                ("cl_ord_id", ""),
                ("cl_ord_id", "x" * 37),
            ]
        )
        return self._request("wrong_type", "order.place", self._order(**{field: value}), VALIDATION)

    def unknown_field(self) -> Bad:
        if self.rng.random() < 0.5:
            params = self._order(**{self.rng.choice(["account", "actor", "fee", "x"]): "bob"})
            return self._request("unknown_field", "order.place", params, VALIDATION)
        request_id = self._id()
        frame = json.dumps(
            {"id": request_id, "method": "orders.open", "params": {}, "actor": "bob"}
        )
        return Bad("unknown_field", frame, request_id, VALIDATION)

    def unknown_method(self) -> Bad:
        method = self.rng.choice(["order.nope", "op.delete_everything", "ORDER.PLACE", "x" * 33])
        return self._request("unknown_method", method, {}, VALIDATION)

    def bad_quantity(self) -> Bad:
        quantity = self.rng.choice([0, -1, -(10**9), 10**30, 2**64, 1.5, 0.1, "10", None, True])
        params = self._order(quantity=quantity)
        return self._request("bad_quantity", "order.place", params, VALIDATION)

    def off_tick_price(self) -> Bad:
        price = self.rng.choice(["99.01", "99.05", "100.09", "99.001", "0.01", "99.0000001"])
        return self._request(
            "off_tick_price", "order.place", self._order(price=price), {"INVALID_PRICE_INCREMENT"}
        )

    def non_numeric_price(self) -> Bad:
        price = self.rng.choice(
            ["NaN", "nan", "Infinity", "-inf", "abc", "1e3", "-5", "", " 99.00", "99.", ".5",
             "99,00", "0x63", "9" * 41, "1" * 19, "99.00\n", "99\n"]
        )  # fmt: skip
        return self._request(
            "non_numeric_price", "order.place", self._order(price=price), VALIDATION
        )

    def deeply_nested(self) -> Bad:
        # Deeper than msgspec recurses (~1,000 levels) in a 2 KB frame: anywhere in the frame.
        depth = self.rng.randrange(1_100, 3_000)
        nested = "[" * depth + "]" * depth
        frame = (
            self.rng.choice(
                [
                    '{"id":"n","method":"order.place","params":%s}',
                    '{"id":"n","method":"orders.open","x":%s,"params":{}}',
                    '{"id":"n","method":"order.place","params":{"symbol":%s}}',
                ]
            )
            % nested
        )
        return Bad("deeply_nested", frame, None, VALIDATION)

    def binary_frame(self) -> Bad:
        good = json.dumps({"id": self._id(), "method": "orders.open", "params": {}})
        payload = self.rng.choice(
            [good.encode(), bytes(self.rng.randrange(256) for _ in range(64))]
        )
        return Bad("binary_frame", payload, None, VALIDATION, text=False)

    def core_refusal(self) -> Bad:
        choice = self.rng.randrange(3)
        if choice == 0:  # Outside the static band 90.00 to 110.00.
            params = self._order(price=self.rng.choice(["150.00", "10.00", "89.90"]))
            return self._request("core_refusal", "order.place", params, {"PRICE_BAND"})
        if choice == 1:  # Alice holds no units.
            params = self._order(side="sell", price="105.00")
            return self._request("core_refusal", "order.place", params, {"INSUFFICIENT_SHARES"})
        # More than alice's cash: 10,000,000 units at 99.00.
        params = self._order(quantity=10_000_000)
        return self._request("core_refusal", "order.place", params, {"INSUFFICIENT_BALANCE"})

    def foreign_cancel(self) -> Bad:
        params = {"order_id": self.victim_order_id}  # The issuer's: as if it did not exist.
        return self._request("foreign_cancel", "order.cancel", params, {"UNKNOWN_ORDER"})

    def oversized_frame(self) -> Bad:
        padding = "x" * (protocol.FRAME_BYTES_MAX + 1)
        frame = json.dumps({"id": self._id(), "method": "orders.open", "params": {"p": padding}})
        return Bad("oversized_frame", frame, None, set(), close_code=1009)

    def invalid_utf8(self) -> Bad:
        frame = b'{"id": "1", "method": "orders.open", "params": {"x": "\xff\xfe\xc3"}}'
        return Bad("invalid_utf8", frame, None, set(), close_code=1007)

    def before_logon(self) -> Bad:
        return self._request("before_logon", "order.place", self._order(), {"UNAUTHORIZED"})


def market_digest(exchange: Exchange) -> str:
    """sha256 of the balances, every book's levels and orders, phases and the open orders."""
    state = exchange.state
    parts: list[Any] = [list(exchange.balances.entries())]
    for symbol, instrument in sorted(state.instruments.items()):
        parts.append([symbol, instrument.phase.value, instrument.book.l2(10**6)])
    parts.append(
        sorted(
            (order_id, order.account, order.price_ticks, order.quantity_units, order.cum_units)
            for order_id, order in state.orders.items()
        )
    )
    return hashlib.sha256(repr(parts).encode()).hexdigest()


@pytest_asyncio.fixture
async def fast_server(venue: Venue) -> AsyncIterator[RunningServer]:
    # No order-rate limit in the way: every frame must get its own typed error, not a 429.
    async with run_server(
        venue.data_dir, logon_timeout_s=2.0, order_rate_per_s=10**9, order_burst=10**9
    ) as running:
        venue.url = running.url
        await list_the_market(venue)
        yield running


async def _logged_on(venue: Venue) -> ClientConnection:
    headers = {"Authorization": f"Bearer {venue.tokens['alice']}"}
    return await connect(venue.url, additional_headers=headers, max_size=None)


async def _answers(connection: ClientConnection, count: int) -> list[dict[str, Any]]:
    answers = []
    for _ in range(count):
        answers.append(json.loads(await asyncio.wait_for(connection.recv(), ANSWER_TIMEOUT_S)))
    return answers


def _check_answers(batch: list[Bad], answers: list[dict[str, Any]]) -> None:
    by_id = {bad.answer_id: bad for bad in batch if bad.answer_id is not None}
    unnamed = [bad for bad in batch if bad.answer_id is None]
    unnamed_answers = 0
    for answer in answers:
        assert answer["status"] in (400, 404, 422), answer
        bad = by_id.pop(answer["id"], None) if answer["id"] is not None else None
        if bad is None:
            assert answer["id"] is None, answer
            unnamed_answers += 1
            assert answer["error"]["code"] == "VALIDATION_ERROR", answer
            continue
        assert answer["error"]["code"] in bad.codes, (bad, answer)
    assert not by_id and unnamed_answers == len(unnamed), (by_id, unnamed)


async def _expect_close(connection: ClientConnection, bad: Bad) -> None:
    await connection.send(bad.frame, text=bad.text)
    with pytest.raises(ConnectionClosed):
        while True:  # Nothing but the close may come back.
            answer = await asyncio.wait_for(connection.recv(), ANSWER_TIMEOUT_S)
            raise AssertionError(f"{bad.kind} was answered: {answer!r}")
    assert connection.close_code == bad.close_code, (bad.kind, connection.close_code)


async def _before_logon(venue: Venue, bad: Bad) -> None:
    async with connect(venue.url) as anonymous:
        await anonymous.send(bad.frame)
        answer = json.loads(await asyncio.wait_for(anonymous.recv(), ANSWER_TIMEOUT_S))
        assert (answer["status"], answer["error"]["code"]) == (401, "UNAUTHORIZED"), answer
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(anonymous.recv(), ANSWER_TIMEOUT_S)
        assert anonymous.close_code == 1008


async def test_ten_thousand_bad_frames_change_nothing(
    venue: Venue, fast_server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    seed = int(os.environ.get("IPX_TEST_SEED", random.randrange(1 << 30)))
    print(f"seed {seed} (replay with IPX_TEST_SEED={seed})")
    gateway = fast_server.gateway
    reached_core: Counter[str] = Counter()

    def watch(outcome: Outcome) -> list[Any]:
        if outcome.reply is not None:  # None: the sequencer's clock tick.
            reached_core[type(outcome.reply).__name__] += 1
        return []

    # Something on the book to disturb: alice's bid and the issuer's ask.
    alice = await venue.client("alice")
    issuer = await venue.client("issuer")
    await alice.place(SYMBOL, "buy", 10, "99.00")
    victim = await issuer.place(SYMBOL, "sell", 10, "101.00")
    await alice.close()
    await issuer.close()
    await sessions_ended(gateway)  # Their EndSession records come before the watch.
    gateway.sequencer.observe(watch)
    before = market_digest(gateway.sequencer.exchange)
    generator = Generator(random.Random(seed), victim["order_id"])
    sent: Counter[str] = Counter()
    started = time.monotonic()
    connection = await _logged_on(venue)
    batch: list[Bad] = []
    for _ in range(FRAMES):
        bad = generator.next()
        sent[bad.kind] += 1
        if bad.kind == "before_logon":
            await _before_logon(venue, bad)
        elif bad.close_code:
            _check_answers(batch, await _answers(connection, len(batch)))
            batch = []
            await _expect_close(connection, bad)
            connection = await _logged_on(venue)  # Reconnect after the close.
        else:
            await connection.send(bad.frame, text=bad.text)
            batch.append(bad)
            if len(batch) == BATCH:
                _check_answers(batch, await _answers(connection, len(batch)))
                batch = []
    _check_answers(batch, await _answers(connection, len(batch)))
    await connection.close()
    elapsed = time.monotonic() - started
    print(f"{FRAMES} bad frames in {elapsed:.1f} s; by kind: {dict(sorted(sent.items()))}")
    print(f"commands that reached the core: {dict(reached_core)}")
    assert gateway.sequencer.running, "the exchange stopped"
    crashes = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert not crashes, crashes  # No request failed inside the gateway (500 INTERNAL).
    assert market_digest(gateway.sequencer.exchange) == before
    assert set(reached_core) <= {CommandRejected.__name__, OrderRejected.__name__}
    assert sum(reached_core.values()) == sent["core_refusal"]
    assert all(sent[kind] for kind, _, _ in generator.kinds), "a kind was never sent"
    async with await venue.client("alice") as after:  # Still open for business.
        assert (await after.place(SYMBOL, "buy", 1, "99.10"))["status"] == "open"


async def test_a_nested_logon_frame_is_a_failed_logon_not_a_server_fault(
    venue: Venue, fast_server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    # JSON nested past msgspec's recursion limit, as the first frame of a connection.
    nested = "[" * 1_100 + "]" * 1_100
    async with connect(venue.url) as anonymous:
        await anonymous.send('{"id":"1","method":"session.logon","params":' + nested + "}")
        answer = json.loads(await asyncio.wait_for(anonymous.recv(), ANSWER_TIMEOUT_S))
        assert (answer["status"], answer["error"]["code"]) == (400, "VALIDATION_ERROR"), answer
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(anonymous.recv(), ANSWER_TIMEOUT_S)
        assert anonymous.close_code == 1008
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
