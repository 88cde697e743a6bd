"""docs/asyncapi.json: in step with the code, well formed, and true of real frames.

No package on PyPI was found to ship the official AsyncAPI 3.0 JSON Schema (checked:
asyncapi-python, asyncapi3, asyncapi-payload-validator, asyncapi-python-parser-jonaslagoni,
asyncapi-viewer, asyncapi-container, asyncapi-mate, pydantic-asyncapi), so the document is
checked against the structural rules of the 3.0.0 specification written out below, and its
payload schemas are checked with jsonschema against frames the code really sends.

Rules:
- The committed file is what the code generates, and follows AsyncAPI 3.0.
- Every channel and topic is described: the WebSocket (every method, every push), the MQTT
  topics (the publisher's state included) and the Redis streams and hashes; the servers are
  where `ipx serve` listens by default.
- Every method's reply names its result: the reply event's schema for the methods that answer
  with it, a schema of the answer's fields for the others; real answers validate against them
  (on a real server), and an execution report's event is typed by the exchange's events.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # No stubs shipped.
import msgspec
import pytest

from exchange.events import PRIVATE_EVENTS
from gateway import asyncapi, execution_reports, market_data, mqtt_publisher, protocol
from gateway.client import IpxClient
from gateway.serve_cli import DEFAULT_PORT
from tests.exchange.rulebook import SYMBOL, Market
from tests.gateway import conftest as venues

DOCUMENT = json.loads(asyncapi.DOCUMENT_PATH.read_text())
COMPONENT_KEY = re.compile(r"^[a-zA-Z0-9.\-_]+$")  # Spec 3.0.0, Components Object.


def resolve(pointer: str) -> Any:
    assert pointer.startswith("#/"), f"{pointer} points outside the document"
    node: Any = DOCUMENT
    for part in pointer[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"{pointer} does not resolve"
        node = node[part]
    return node


def references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)


def validate(frame: bytes | dict[str, Any], schema_name: str) -> None:
    instance = json.loads(frame) if isinstance(frame, bytes) else frame
    schema = {"$ref": asyncapi.SCHEMAS + schema_name, "components": DOCUMENT["components"]}
    jsonschema.Draft202012Validator(schema).validate(instance)


def test_the_committed_document_is_what_the_code_generates() -> None:
    assert asyncapi.DOCUMENT_PATH.read_text() == asyncapi.render(), (
        "docs/asyncapi.json is stale: run .venv/bin/python -m gateway.asyncapi"
    )
    assert asyncapi.main(["--check"]) == 0


def test_the_check_fails_on_a_stale_file(tmp_path: Any) -> None:
    stale = tmp_path / "asyncapi.json"
    stale.write_text(asyncapi.render().replace('"order.place"', '"order.put"'))
    assert asyncapi.main(["--check", "--output", str(stale)]) == 1


def test_the_document_follows_the_asyncapi_3_structure() -> None:
    assert DOCUMENT["asyncapi"] == "3.0.0"
    assert DOCUMENT["info"]["title"] and DOCUMENT["info"]["version"]
    for server in DOCUMENT["servers"].values():
        assert server["host"] and server["protocol"] in {"ws", "wss", "mqtt", "mqtts", "redis"}
    for name, channel in DOCUMENT["channels"].items():
        assert isinstance(channel["address"], str), name
        placeholders = set(re.findall(r"{([^}]+)}", channel["address"]))
        assert placeholders == set(channel.get("parameters", {})), name
        assert channel["messages"], name
        for message in channel["messages"].values():
            assert "payload" in message, name
        for server in channel.get("servers", []):
            assert server["$ref"].startswith("#/servers/")
    for name, operation in DOCUMENT["operations"].items():
        assert operation["action"] in {"send", "receive"}, name
        channel_ref = operation["channel"]["$ref"]
        assert channel_ref.startswith("#/channels/"), name
        channel = resolve(channel_ref)
        # Spec: an operation's messages MUST be a subset of its channel's messages.
        for message in operation["messages"]:
            assert message["$ref"].startswith(channel_ref + "/messages/"), name
        reply = operation.get("reply")
        if reply is not None:
            reply_channel = reply["channel"]["$ref"]
            for message in reply["messages"]:
                assert message["$ref"].startswith(reply_channel + "/messages/"), name
        assert channel is not None
    for section in DOCUMENT["components"].values():
        assert all(COMPONENT_KEY.match(key) for key in section)


def test_every_reference_resolves() -> None:
    refs = list(references(DOCUMENT))
    assert len(refs) > 100
    for ref in refs:
        resolve(ref)


def test_every_method_and_every_push_channel_is_described() -> None:
    operations = DOCUMENT["operations"]
    for method, params in protocol.METHODS.items():
        operation = operations[method.replace(".", "_")]
        assert operation["action"] == "receive" and operation["reply"]
        request = resolve(operation["messages"][0]["$ref"])
        schema = resolve(request["payload"]["$ref"])
        assert schema["properties"]["method"] == {"const": method}
        assert schema["properties"]["params"]["$ref"].endswith("/" + params.__name__)
    pushed = {
        message["name"]
        for message in DOCUMENT["channels"]["gateway"]["messages"].values()
        if message["name"] in {*market_data.CHANNELS, market_data.HEARTBEAT}
    }
    assert pushed == {*market_data.CHANNELS, market_data.HEARTBEAT}
    addresses = {channel["address"] for channel in DOCUMENT["channels"].values()}
    for topic in ("trades", "l2/delta", "l2/snapshot", "bbo", "status"):
        assert f"ipx/v1/md/{{symbol}}/{topic}" in addresses
    assert "ipx/v1/ref/instrument/{symbol}" in addresses
    assert "ipx/v1/publisher/{identifier}/state" in addresses


def test_the_publisher_state_and_its_withdrawal_are_described() -> None:
    # After a failure the MQTT publisher says offline and empties its retained market data.
    state = next(
        channel
        for channel in DOCUMENT["channels"].values()
        if channel["address"] == "ipx/v1/publisher/{identifier}/state"
    )
    assert "withdraws" in state["description"]
    schema = {"$ref": asyncapi.SCHEMAS + "PublisherState", "components": DOCUMENT["components"]}
    for payload in (mqtt_publisher.ONLINE, mqtt_publisher.OFFLINE):
        jsonschema.Draft202012Validator(schema).validate(payload.decode())
    for name in mqtt_publisher.RETAINED_MARKET_DATA:
        (channel,) = (
            channel
            for channel in DOCUMENT["channels"].values()
            if channel["address"] == f"ipx/v1/md/{{symbol}}/{name}"
        )
        assert "withdraws" in channel["description"], name


def test_the_publisher_state_topic_and_the_redis_keys_are_described() -> None:
    addresses = {channel["address"] for channel in DOCUMENT["channels"].values()}
    assert "ipx/v1/publisher/{identifier}/state" in addresses
    # The braces of a symbol's keys are a Redis Cluster hash tag (the descriptions say so).
    for key in ("ipx:{symbol}:events", "ipx:operator:events", "ipx:{symbol}:ticker"):
        assert key in addresses
    assert {"ipx:{symbol}:bbo", "ipx:publisher"} <= addresses
    state = next(c for c in DOCUMENT["channels"].values() if c["address"].endswith("/state"))
    payload = resolve(state["messages"]["message"]["payload"]["$ref"])
    assert set(payload["enum"]) == {mqtt_publisher.ONLINE.decode(), mqtt_publisher.OFFLINE.decode()}


def test_the_servers_are_where_ipx_serve_listens_by_default() -> None:
    assert DOCUMENT["servers"]["gateway"]["host"] == f"localhost:{DEFAULT_PORT}"
    assert DOCUMENT["servers"]["redis"]["protocol"] == "redis"


def test_every_method_replies_with_a_result_of_its_own() -> None:
    for method in protocol.METHODS:
        key = method.replace(".", "_")
        replies = [m["$ref"] for m in DOCUMENT["operations"][key]["reply"]["messages"]]
        assert replies == [
            f"#/channels/gateway/messages/{key}_result",
            "#/channels/gateway/messages/error",
        ]
        result = resolve(resolve(replies[0])["payload"]["$ref"])["properties"]["result"]
        assert result and result != {}, method


def test_an_execution_reports_event_is_typed_by_the_exchanges_events() -> None:
    event = DOCUMENT["components"]["schemas"]["ExecutionReportPush"]["properties"]["event"]
    typed = {resolve(option["allOf"][0]["$ref"])["title"] for option in event["anyOf"]}
    assert typed == {kind.__name__ for kind in PRIVATE_EVENTS}
    market = Market().trading()
    market.give_units("alice", 50)
    market.sell("alice", 10, 1_000)
    outcome = market.buy("bob", 4, 1_000)  # Bob's order, filled, and alice's fill.
    instruments = market.exchange.state.instruments
    reports = [e for e in outcome.events if type(e) in PRIVATE_EVENTS]
    assert {type(e).__name__ for e in reports} >= {"OrderAccepted", "OrderFilled"}
    for event in reports:
        view = execution_reports.report_view(event, instruments)
        push = execution_reports.ExecutionReportPush("update", 1, 0, outcome.seq, view)
        validate(msgspec.json.encode(push), "ExecutionReportPush")
        view["price"] = 7  # Prices are decimal strings.
        with pytest.raises(jsonschema.ValidationError):
            validate(msgspec.json.encode(push), "ExecutionReportPush")


# The payload schemas against frames the code sends.


def test_request_frames_validate_and_unknown_fields_do_not() -> None:
    frame: dict[str, Any] = {
        "id": "7",
        "method": "order.place",
        "params": {"symbol": "RS-X", "cl_ord_id": "c1", "side": "buy", "quantity": 5},
    }
    request = protocol.decode_request(json.dumps(frame))
    protocol.decode_params(request)  # The code accepts it ...
    validate(frame, "order_place_request")  # ... and so does the document.
    frame["params"]["colour"] = "red"
    with pytest.raises(protocol.ProtocolError):
        protocol.decode_params(protocol.decode_request(json.dumps(frame)))
    with pytest.raises(jsonschema.ValidationError):
        validate(frame, "order_place_request")


def test_response_frames_validate() -> None:
    validate(protocol.encode_result("7", {"order_id": 1}), "Result")
    validate(protocol.encode_error("7", 429, "RATE_LIMITED", "slow down", 250), "ErrorResponse")
    validate(protocol.encode_error(None, 400, "VALIDATION_ERROR", "bad frame"), "ErrorResponse")
    with pytest.raises(jsonschema.ValidationError):
        validate(protocol.encode_error("7", 418, "TEAPOT", "no"), "ErrorResponse")


def test_market_data_messages_validate() -> None:
    market = Market().trading()
    data = market_data.MarketData(market.exchange)
    market.give_units("alice", 50)
    messages: list[market_data.Message] = []
    for outcome in (market.sell("alice", 10, 1_000), market.buy("bob", 4, 1_000)):
        messages += data.on_outcome(outcome)
    messages += [data.snapshot(channel, SYMBOL) for channel in market_data.CHANNELS]
    messages.append(data.heartbeat(SYMBOL, market.ts_ns))
    seen: set[str] = set()
    for message in messages:
        kind = type(message).__name__
        validate(market_data.encode(message), kind)
        seen.add(kind)
    assert seen == {kind.__name__ for kind in asyncapi.PUSH_TYPES}
    broken = msgspec.json.decode(market_data.encode(messages[0]))
    broken["seq"] = "one"
    with pytest.raises(jsonschema.ValidationError):
        validate(broken, type(messages[0]).__name__)


def test_the_instrument_reference_payload_validates() -> None:
    reference = mqtt_publisher.InstrumentReference(
        SYMBOL, "US10123456B2", "A patent", "US", "H04L", "2015-03-01", "2035-03-01",
        "USD", "0.10", 1, 100_000, "continuous",
    )  # fmt: skip
    validate(msgspec.json.encode(reference), "InstrumentReference")
    channel = next(
        channel
        for channel in DOCUMENT["channels"].values()
        if channel["address"] == "ipx/v1/ref/instrument/{symbol}"
    )
    payload = channel["messages"]["message"]["payload"]["$ref"]
    assert payload == asyncapi.SCHEMAS + "InstrumentReference"


ASYNCAPI_SCHEMA = json.loads(
    (asyncapi.DOCUMENT_PATH.parents[1] / "tests/gateway/schemas/asyncapi-3.0.0.json").read_text()
)


def test_the_document_validates_against_the_official_asyncapi_3_json_schema() -> None:
    validator = jsonschema.Draft7Validator(ASYNCAPI_SCHEMA)
    errors = [f"{list(error.path)}: {error.message}" for error in validator.iter_errors(DOCUMENT)]
    assert errors == []


def test_the_official_schema_refuses_a_broken_document() -> None:
    broken = json.loads(json.dumps(DOCUMENT))
    broken["operations"]["bad"] = {"action": "shout", "channel": {"$ref": "#/channels/none"}}
    assert not jsonschema.Draft7Validator(ASYNCAPI_SCHEMA).is_valid(broken)


@pytest.mark.asyncio
async def test_every_methods_real_answer_validates_against_its_result_schema(
    market: venues.Venue,
) -> None:
    answers: dict[str, Any] = {}

    async def ask(client: IpxClient, method: str, params: dict[str, Any] | None = None) -> Any:
        answers[method] = result = await client.request(method, params or {})
        return result

    await venues.alice_buys_issuer_sells(market)
    operator, alice = await market.client("op"), await market.client("alice")
    try:
        symbol = venues.SYMBOL
        await ask(alice, "session.cancel_on_disconnect", {"enabled": True})
        placed = await ask(
            alice,
            "order.place",
            {"symbol": symbol, "cl_ord_id": "a1", "side": "buy", "quantity": 5, "price": "99.00"},
        )
        await ask(alice, "order.amend", {"cl_ord_id": "a1", "price": "98.00", "quantity": 4})
        await ask(alice, "order.status", {"order_id": placed["order_id"]})
        await ask(alice, "orders.open")
        await ask(alice, "order.cancel", {"cl_ord_id": "a1"})
        await ask(alice, "order.cancel_all", {"symbol": symbol})
        await ask(alice, "instruments.list")
        await ask(alice, "instrument.info", {"symbol": symbol})
        await ask(alice, "book.snapshot", {"symbol": symbol})
        await ask(alice, "executions.subscribe")
        await ask(alice, "md.subscribe", {"symbol": symbol, "channels": ["trades", "ticker"]})
        await ask(alice, "md.unsubscribe", {"symbol": symbol, "channels": ["trades"]})
        await ask(alice, "subscribe", {"channel": "balances"})
        await ask(alice, "unsubscribe", {"channel": "ticker", "symbol": symbol})
        await ask(operator, "op.open_account", {"account_id": "carol", "role": "investor"})
        cash = {"account_id": "issuer", "currency": "USD"}
        await ask(operator, "op.deposit", {**cash, "amount": "100.00"})
        await ask(operator, "op.withdraw", {**cash, "amount": "1.00"})
        await ask(operator, "op.kill_switch", {"account_id": "carol", "engaged": True})
        await ask(operator, "op.cancel_all", {"account_id": "alice"})
        await ask(
            operator,
            "op.distribute_royalty",
            {"symbol": symbol, "amount": "10.00", "payer_account": "issuer", "period_id": "Q1"},
        )
        for method in ("account.balances", "account.fills", "account.royalties"):
            await ask(alice, method)  # Alice holds the units she bought: a fill, a payment.
        assert answers["account.fills"]["fills"] and answers["account.royalties"]["payments"]
        await ask(operator, "op.start_auction", {"symbol": symbol, "duration_ns": 10**9})
        await ask(operator, "op.halt", {"symbol": symbol})
        await ask(operator, "op.resume", {"symbol": symbol})
        await ask(operator, "op.close_market", {"symbol": symbol})
        await ask(
            operator,
            "op.list_asset",
            {
                "patent_id": "US20000001B2", "title": "T", "jurisdiction": "US",
                "owner_account": "issuer", "filing_date": "2015-01-01",
                "expiry_date": "2035-01-01", "cpc_class": "H04L", "currency": "USD",
                "royalty_terms": "x",
            },
        )  # fmt: skip
        await ask(
            operator,
            "op.issue_shares",
            {
                "patent_id": "US20000001B2", "symbol": "RS-US20000001B2",
                "issuer_account": "issuer", "total_units": 1_000, "currency": "USD",
                "tick_size": "0.10", "reference_price": "10.00",
            },
        )  # fmt: skip
        await ask(
            operator,
            "op.open_offering",
            {
                "symbol": "RS-US20000001B2",
                "units": 100,
                "min_price": "9.00",
                "end_ts_ns": time.time_ns() + 10**12,
            },
        )
    finally:
        await operator.close()
        await alice.close()
    client = await IpxClient.connect(market.url, market.tokens["bob"], bearer=False)
    answers["session.logon"] = {"account": client.account, "role": client.role}  # Its answer.
    await client.close()
    assert set(answers) == set(protocol.METHODS)
    for method, result in answers.items():
        key = method.replace(".", "_")
        validate({"id": "1", "status": 200, "result": result}, f"{key}_result")
    with pytest.raises(jsonschema.ValidationError):
        validate({"id": "1", "status": 200, "result": {"orders": 3}}, "orders_open_result")
