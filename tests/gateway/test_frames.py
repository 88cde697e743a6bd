"""Malformed input is answered with a typed error and never reaches the core or stops the server."""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from gateway import protocol
from tests.gateway.conftest import SYMBOL, Venue

pytestmark = pytest.mark.asyncio


def _order(**changes: Any) -> dict[str, Any]:
    params = {"symbol": SYMBOL, "cl_ord_id": "f-1", "side": "buy", "quantity": 1, "price": "99"}
    params.update(changes)
    return {"id": "r", "method": "order.place", "params": params}


BAD_FRAMES: list[tuple[str, str | bytes, int, str]] = [
    ("invalid JSON", "{not json", 400, "VALIDATION_ERROR"),
    ("a JSON array", "[1, 2]", 400, "VALIDATION_ERROR"),
    ("no method", json.dumps({"id": "r", "params": {}}), 400, "VALIDATION_ERROR"),
    ("unknown method", json.dumps({"id": "r", "method": "order.steal"}), 400, "VALIDATION_ERROR"),
    ("unknown field", json.dumps(_order(colour="red")), 400, "VALIDATION_ERROR"),
    ("price as a number", json.dumps(_order(price=99.5)), 400, "VALIDATION_ERROR"),
    ("price NaN string", json.dumps(_order(price="NaN")), 400, "VALIDATION_ERROR"),
    ("price NaN literal", '{"id":"r","method":"order.place","params":{"price":NaN}}', 400,
     "VALIDATION_ERROR"),
    ("price Infinity", json.dumps(_order(price="Infinity")), 400, "VALIDATION_ERROR"),
    ("negative price", json.dumps(_order(price="-99")), 400, "VALIDATION_ERROR"),
    ("exponent price", json.dumps(_order(price="9.9e1")), 400, "VALIDATION_ERROR"),
    ("off-tick price", json.dumps(_order(price="99.01")), 400, "INVALID_PRICE_INCREMENT"),
    ("huge price", json.dumps(_order(price="9" * 30)), 400, "VALIDATION_ERROR"),
    ("quantity as a string", json.dumps(_order(quantity="1")), 400, "VALIDATION_ERROR"),
    ("fractional quantity", json.dumps(_order(quantity=1.5)), 400, "VALIDATION_ERROR"),
    ("huge quantity", json.dumps(_order(quantity=10**40)), 400, "VALIDATION_ERROR"),
    ("zero quantity", json.dumps(_order(quantity=0)), 400, "VALIDATION_ERROR"),
    ("bad side", json.dumps(_order(side="long")), 400, "VALIDATION_ERROR"),
    ("long cl_ord_id", json.dumps(_order(cl_ord_id="x" * 37)), 400, "VALIDATION_ERROR"),
    ("huge order id", json.dumps({"id": "r", "method": "order.cancel",
                                  "params": {"order_id": 2**64}}), 400, "VALIDATION_ERROR"),
    ("both order references", json.dumps({"id": "r", "method": "order.cancel",
                                          "params": {"order_id": 1, "cl_ord_id": "a"}}), 400,
     "VALIDATION_ERROR"),
    ("a second logon", json.dumps({"id": "r", "method": "session.logon",
                                   "params": {"token": "x"}}), 400, "VALIDATION_ERROR"),
    ("binary frame", b'{"id": "r", "method": "orders.open", "params": {}}', 400,
     "VALIDATION_ERROR"),
]  # fmt: skip


async def _open(venue: Venue) -> ClientConnection:
    headers = {"Authorization": f"Bearer {venue.tokens['alice']}"}
    return await connect(venue.url, additional_headers=headers)


async def _ask(connection: ClientConnection, frame: str | bytes) -> dict[str, Any]:
    await connection.send(frame)
    answer: dict[str, Any] = json.loads(await connection.recv())
    return answer


@pytest.mark.parametrize(
    ("frame", "status", "code"),
    [case[1:] for case in BAD_FRAMES],
    ids=[case[0] for case in BAD_FRAMES],
)
async def test_a_bad_frame_gets_a_typed_error_and_the_session_carries_on(
    market: Venue, frame: str | bytes, status: int, code: str
) -> None:
    connection = await _open(market)
    try:
        answer = await _ask(connection, frame)
        assert (answer["status"], answer["error"]["code"]) == (status, code), answer
        assert answer["error"]["message"]
        if isinstance(frame, str) and '"id": "r"' in frame:
            assert answer["id"] == "r"
        # The same connection still serves a good request.
        good = await _ask(connection, json.dumps({"id": "ok", "method": "orders.open"}))
        assert (good["id"], good["status"]) == ("ok", 200)
    finally:
        await connection.close()


async def test_nothing_malformed_reached_the_journal(market: Venue) -> None:
    connection = await _open(market)
    try:
        before = await _ask(connection, json.dumps({"id": "s", "method": "book.snapshot",
                                                     "params": {"symbol": SYMBOL}}))  # fmt: skip
        for _, frame, _, _ in BAD_FRAMES:
            await _ask(connection, frame)
        after = await _ask(connection, json.dumps({"id": "s", "method": "book.snapshot",
                                                    "params": {"symbol": SYMBOL}}))  # fmt: skip
        # Only the off-tick price passes the wire and is refused by its instrument's tick,
        # still at the edge: the exchange handled no command at all.
        assert after["result"]["seq"] == before["result"]["seq"]
    finally:
        await connection.close()


async def test_a_frame_above_the_limit_closes_with_1009(market: Venue) -> None:
    connection = await _open(market)
    padding = "x" * protocol.FRAME_BYTES_MAX
    await connection.send(json.dumps({"id": "big", "method": "orders.open", "pad": padding}))
    with pytest.raises(ConnectionClosed):
        await connection.recv()
    assert connection.close_code == 1009
    # The server still serves others.
    other = await _open(market)
    try:
        good = await _ask(other, json.dumps({"id": "ok", "method": "orders.open"}))
        assert good["status"] == 200
    finally:
        await other.close()
