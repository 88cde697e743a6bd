"""The AsyncAPI 3.0 document of the gateway and the MQTT feed, built from the msgspec types.

    python -m gateway.asyncapi            writes docs/asyncapi.json
    python -m gateway.asyncapi --check    exits 1 when docs/asyncapi.json is out of date

Every payload schema comes from `msgspec.json.schema_components` over the same types that
decode requests (protocol.METHODS) and encode pushes (market_data.Message), so the document
cannot describe a field the code does not have. The envelopes (request, result, error) are
written here, once, because protocol.py builds them from dicts; tests check real frames
against them.

Invariants:
- `document()` is deterministic: the same code gives byte-identical JSON (sorted methods,
  sorted schema names), so the committed file can be compared with a fresh build.
- Every `$ref` points inside the document.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from gateway import accounts, execution_reports, liquidity, market_data, mqtt_publisher, protocol

VERSION = "0.1.0"
DOCUMENT_PATH = Path(__file__).resolve().parent.parent / "docs" / "asyncapi.json"
SCHEMAS = "#/components/schemas/"
MQTT_PREFIX = mqtt_publisher.DEFAULT_PREFIX

# Market-data message type -> (MQTT topic under md/{symbol}/, retained, description).
MQTT_TOPICS: tuple[tuple[type[Any], str, bool, str], ...] = (
    (market_data.Trades, "trades", False, "Every trades update, QoS 0."),
    (
        market_data.BookL2,
        "l2/delta",
        False,
        "Every book.l2 update, QoS 0; user properties seq and prev_seq.",
    ),
    (
        market_data.BookL2,
        "l2/snapshot",
        True,
        "A book.l2 snapshot, retained with a message expiry; republished when the book moved.",
    ),
    (market_data.Ticker, "bbo", True, "Every ticker message (best bid and ask, last), retained."),
    (market_data.Status, "status", True, "Every status message, retained."),
    (
        liquidity.LiquidityMessage,
        "liquidity",
        True,
        "Every liquidity update (on change and about once a second), retained.",
    ),
)
# Said of each retained market-data topic (mqtt_publisher.RETAINED_MARKET_DATA).
WITHDRAWN = (
    " Emptied (an empty retained message deletes it) when the publisher withdraws: its "
    "state turns offline for good after a failure."
)
PUBLISHER_STATE = (
    "The publisher's liveness, retained, QoS 1: online after each connection; offline from "
    "the Last Will when the connection dies, at a clean stop, and when the publisher "
    "withdraws: once the exchange's journal failed, or market data switched itself off, it "
    "says offline, empties every retained market-data topic and publishes no more market "
    "data until the restart."
)
PUSH_TYPES: tuple[type[Any], ...] = (
    market_data.BookL2,
    market_data.BookL3,
    market_data.Trades,
    market_data.Ticker,
    market_data.Status,
    market_data.Heartbeat,
)
# Pushes computed outside market_data: liquidity (gateway/liquidity.py), subscribed alike,
# and the private channels of the session's account.
OTHER_PUSH_TYPES: tuple[type[Any], ...] = (
    liquidity.LiquidityMessage,
    execution_reports.ExecutionReportPush,
    accounts.BalancesPush,
)
ERROR_CODES = sorted(
    {reason.value for reason in protocol.REJECT_STATUS}
    | {"UNAUTHORIZED", "FORBIDDEN", "RATE_LIMITED", "INTERNAL", "OVERLOADED", "UNAVAILABLE"}
    | {"VALIDATION_ERROR"}
)


def _key(method: str) -> str:
    # "order.place" -> "order_place": message and operation keys allow [A-Za-z0-9_.-] only
    # in components; underscores keep them readable as plain identifiers too.
    return method.replace(".", "_")


def _envelopes() -> dict[str, Any]:
    request_id = {"type": "string", "minLength": 1, "maxLength": 64}
    return {
        "Error": {
            "type": "object",
            "description": "A refusal: a stable code, a message in full words.",
            "properties": {
                "code": {"type": "string", "enum": ERROR_CODES},
                "message": {"type": "string"},
                "retry_after_ms": {"type": "integer", "minimum": 0},
            },
            "required": ["code", "message"],
        },
        "ErrorResponse": {
            "type": "object",
            "description": "4xx: refused, nothing done. 5xx: 500 outcome unknown (query the "
            "order by cl_ord_id), 503 overloaded or shutting down (nothing done).",
            "properties": {
                "id": {"anyOf": [request_id, {"type": "null"}]},
                "status": {
                    "type": "integer",
                    "enum": [400, 401, 403, 404, 409, 422, 429, 500, 503],
                },
                "error": {"$ref": SCHEMAS + "Error"},
            },
            "required": ["id", "status", "error"],
        },
        "Result": {
            "type": "object",
            "description": "Success: the method's result (described per method in README).",
            "properties": {
                "id": request_id,
                "status": {"const": 200},
                "result": {},
            },
            "required": ["id", "status", "result"],
        },
    }


def _request_schema(method: str, params: type[Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "id": {"type": "string", "minLength": 1, "maxLength": 64},
            "method": {"const": method},
            "params": {"$ref": SCHEMAS + params.__name__},
        },
        "required": ["id", "method"],
        "additionalProperties": False,
    }


def _schemas() -> dict[str, Any]:
    types: list[Any] = sorted(set(protocol.METHODS.values()), key=lambda kind: kind.__name__)
    types += (*PUSH_TYPES, *OTHER_PUSH_TYPES, mqtt_publisher.InstrumentReference)
    _, components = msgspec.json.schema_components(types, ref_template=SCHEMAS + "{name}")
    components.update(_envelopes())
    components["PublisherState"] = {
        "type": "string",
        "enum": [mqtt_publisher.ONLINE.decode(), mqtt_publisher.OFFLINE.decode()],
        "description": "Plain text (not JSON): the publisher's state.",
    }
    return dict(sorted(components.items()))


def _message(name: str, schema_ref: str, summary: str) -> dict[str, Any]:
    return {"name": name, "summary": summary, "payload": {"$ref": SCHEMAS + schema_ref}}


def _gateway_channel() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Return the WebSocket channel, its operations, and the request schemas."""
    messages: dict[str, Any] = {
        "result": _message("result", "Result", "A successful response."),
        "error": _message("error", "ErrorResponse", "A refused or failed request."),
    }
    operations: dict[str, Any] = {}
    requests: dict[str, Any] = {}
    channel_ref = {"$ref": "#/channels/gateway"}
    for method, params in sorted(protocol.METHODS.items()):
        key = _key(method)
        requests[f"{key}_request"] = _request_schema(method, params)
        messages[f"{key}_request"] = _message(method, f"{key}_request", f"{method} request.")
        operations[key] = {
            "action": "receive",
            "channel": channel_ref,
            "summary": f"{method}" + (" (operator)" if method.startswith("op.") else ""),
            "messages": [{"$ref": f"#/channels/gateway/messages/{key}_request"}],
            "reply": {
                "channel": channel_ref,
                "messages": [
                    {"$ref": "#/channels/gateway/messages/result"},
                    {"$ref": "#/channels/gateway/messages/error"},
                ],
            },
        }
    for kind in (*PUSH_TYPES, *OTHER_PUSH_TYPES):
        tag = str(kind.__struct_config__.tag)
        key = f"push_{_key(tag)}"
        messages[key] = _message(tag, kind.__name__, (kind.__doc__ or tag).strip())
        operations[key] = {
            "action": "send",
            "channel": channel_ref,
            "summary": f"Push on the {tag} channel (after a subscribe).",
            "messages": [{"$ref": f"#/channels/gateway/messages/{key}"}],
        }
    channel = {
        "address": "/",
        "title": "IPX gateway WebSocket",
        "description": "JSON text frames. Requests carry an id answered by one response; "
        "pushes carry channel, type, symbol, seq (and prev_seq on updates).",
        "servers": [{"$ref": "#/servers/gateway"}],
        "messages": messages,
    }
    return channel, operations, requests


def _mqtt_channels() -> tuple[dict[str, Any], dict[str, Any]]:
    symbol = {"symbol": {"description": "The instrument's symbol, e.g. RS-US10123456B2."}}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    topics = [
        (f"md/{{symbol}}/{topic}", kind.__name__, retained, description)
        for kind, topic, retained, description in MQTT_TOPICS
    ]
    topics.append(
        (
            "ref/instrument/{symbol}",
            mqtt_publisher.InstrumentReference.__name__,
            True,
            "The instrument's reference data (patent, currency, tick, units), retained.",
        )
    )
    for topic, schema, retained, description in topics:
        key = "mqtt_" + topic.replace("{symbol}/", "").replace("/{symbol}", "").replace("/", "_")
        if topic.removeprefix("md/{symbol}/") in mqtt_publisher.RETAINED_MARKET_DATA:
            description += WITHDRAWN
        channels[key] = {
            "address": f"{MQTT_PREFIX}/{topic}",
            "description": description,
            "servers": [{"$ref": "#/servers/broker"}],
            "parameters": symbol,
            "messages": {"message": {"name": key, "payload": {"$ref": SCHEMAS + schema}}},
        }
        operations[f"publish_{key}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{key}"},
            "summary": ("Retained. " if retained else "") + description,
            "messages": [{"$ref": f"#/channels/{key}/messages/message"}],
            "bindings": {
                "mqtt": {
                    "qos": 1 if topic.startswith("ref/") else 0,
                    "retain": retained,
                    "bindingVersion": "0.2.0",
                }
            },
        }
    key = "mqtt_publisher_state"
    channels[key] = {
        "address": f"{MQTT_PREFIX}/publisher/{{identifier}}/state",
        "description": PUBLISHER_STATE,
        "servers": [{"$ref": "#/servers/broker"}],
        "parameters": {
            "identifier": {"description": "The publisher's MQTT client id, e.g. ipx-gateway-4242."}
        },
        "messages": {
            "message": {
                "name": key,
                "contentType": "text/plain",
                "payload": {"$ref": SCHEMAS + "PublisherState"},
            }
        },
    }
    operations[f"publish_{key}"] = {
        "action": "send",
        "channel": {"$ref": f"#/channels/{key}"},
        "summary": "Retained. " + PUBLISHER_STATE,
        "messages": [{"$ref": f"#/channels/{key}/messages/message"}],
        "bindings": {"mqtt": {"qos": 1, "retain": True, "bindingVersion": "0.2.0"}},
    }
    return channels, operations


def document() -> dict[str, Any]:
    """Build the whole AsyncAPI 3.0 document."""
    gateway, gateway_operations, requests = _gateway_channel()
    mqtt, mqtt_operations = _mqtt_channels()
    schemas = _schemas()
    schemas.update(requests)
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "IPX exchange API",
            "version": VERSION,
            "description": "The IPX gateway's WebSocket API (requests, responses, pushes) "
            "and its public market data over MQTT v5. Prices and cash are decimal "
            "strings, quantities integer units. Generated by gateway/asyncapi.py.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "gateway": {
                "host": "localhost:8765",
                "protocol": "ws",
                "description": "The gateway; authenticate with a bearer token on the upgrade "
                "or a session.logon first frame.",
            },
            "broker": {"host": "localhost:1883", "protocol": "mqtt", "protocolVersion": "5"},
        },
        "channels": {"gateway": gateway, **mqtt},
        "operations": {**gateway_operations, **mqtt_operations},
        "components": {"schemas": dict(sorted(schemas.items()))},
    }


def render() -> str:
    """Return the document as the committed file holds it."""
    return json.dumps(document(), indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is stale")
    parser.add_argument("--output", type=Path, default=DOCUMENT_PATH)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date: run python -m gateway.asyncapi", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
