"""The AsyncAPI 3.0 document of the gateway, the MQTT feed and the Redis streams.

    python -m gateway.asyncapi            writes docs/asyncapi.json
    python -m gateway.asyncapi --check    exits 1 when docs/asyncapi.json is out of date

Every payload schema it can comes from `msgspec.json.schema_components` over the same types
that decode requests (protocol.METHODS), encode pushes (market_data.Message) and make events
(exchange/events.py), so the document cannot describe a field the code does not have. What
the code builds from dicts is written here, once: the envelopes (request, result, error), the
results of the methods that do not answer with their command's event (RESULTS), and the
Redis entries and hashes (gateway/redis_publisher.py); tests check real answers and real
Redis entries against them.

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

from exchange import events
from gateway import (
    accounts,
    execution_reports,
    liquidity,
    market_data,
    mqtt_publisher,
    protocol,
    redis_publisher,
    serve_cli,
)

VERSION = "0.1.0"
DOCUMENT_PATH = Path(__file__).resolve().parent.parent / "docs" / "asyncapi.json"
SCHEMAS = "#/components/schemas/"
MQTT_PREFIX = mqtt_publisher.DEFAULT_PREFIX
REDIS_PREFIX = redis_publisher.DEFAULT_PREFIX

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

# The results of methods that answer with their command's reply event: the event as
# execution_reports.decimal_view gives it (Gateway._answer_outcome).
EVENT_RESULTS: dict[str, type[Any]] = {
    "op.open_account": events.AccountOpened,
    "op.deposit": events.CashDeposited,
    "op.withdraw": events.CashWithdrawn,
    "op.list_asset": events.AssetListed,
    "op.issue_shares": events.SharesIssued,
    "op.open_offering": events.OfferingOpened,
    "op.distribute_royalty": events.RoyaltyDistributed,
    "op.kill_switch": events.KillSwitchChanged,
    "op.cancel_all": events.AllOrdersCanceled,
    "order.cancel_all": events.AllOrdersCanceled,
    "op.halt": events.PhaseChanged,
    "op.resume": events.PhaseChanged,
    "op.start_auction": events.PhaseChanged,
    "op.close_market": events.PhaseChanged,
}
# The events an order's execution report carries exec_type and ord_status with
# (execution_reports.exec_fields).
ORDER_REPORTS = (
    events.OrderAccepted,
    events.OrderFilled,
    events.OrderAmended,
    events.OrderCanceled,
    events.OrderRejected,
)

_INT: dict[str, Any] = {"type": "integer"}
_TEXT: dict[str, Any] = {"type": "string"}
_BOOL: dict[str, Any] = {"type": "boolean"}
_DECIMAL: dict[str, Any] = {"type": "string", "description": "A decimal string."}
_DECIMAL_OR_NULL: dict[str, Any] = {"anyOf": [_DECIMAL, {"type": "null"}]}
_LEVELS: dict[str, Any] = {
    "type": "array",
    "description": "Price levels, best first: [price, units].",
    "items": {"type": "array", "prefixItems": [_DECIMAL, _INT], "minItems": 2, "maxItems": 2},
}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": SCHEMAS + name}


def _object(
    description: str, properties: dict[str, Any], optional: tuple[str, ...] = ()
) -> dict[str, Any]:
    required = [name for name in properties if name not in optional]
    return {
        "type": "object",
        "description": description,
        "properties": properties,
        "required": required,
    }


def _list_of(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": schema}


# The results gateway/server.py and gateway/accounts.py build from dicts, written out once
# (components), then each method's result.
RESULT_COMPONENTS: dict[str, Any] = {
    "OrderView": _object(
        "One of the account's orders (Gateway._order_view); order.place adds the fills of this "
        "arrival, order.cancel the units it canceled.",
        {
            "order_id": _INT,
            "cl_ord_id": _TEXT,
            "symbol": _TEXT,
            "side": _ref("Side"),
            "type": _ref("OrderType"),
            "time_in_force": _ref("TimeInForce"),
            "price": {
                **_DECIMAL,
                "description": "The limit price; a market order's is the price-band edge "
                "that protects it.",
            },
            "quantity": _INT,
            "filled": _INT,
            "leaves": _INT,
            "status": {"enum": ["open", "partially_filled", "filled", "canceled"]},
            "fills": _list_of(_ref("OrderFill")),
            "canceled_units": _INT,
        },
        optional=("fills", "canceled_units"),
    ),
    "OrderFill": _object(
        "One fill of an order.place (Gateway._fill_view).",
        {
            "trade_id": _INT,
            "price": _DECIMAL,
            "quantity": _INT,
            "liquidity": _ref("Liquidity"),
            "fee": _DECIMAL,
        },
    ),
    "RejectedOrderView": _object(
        "order.status of an order the exchange rejected.",
        {
            "order_id": _INT,
            "cl_ord_id": _TEXT,
            "symbol": _TEXT,
            "status": {"const": "rejected"},
            "reason": _ref("Reject"),
            "message": _TEXT,
        },
    ),
    "AccountFill": _object(
        "One fill of the account (gateway/accounts.py, Fills.view).",
        {
            "seq": _INT,
            "ts_ns": _INT,
            "symbol": _TEXT,
            "order_id": _INT,
            "cl_ord_id": _TEXT,
            "trade_id": _INT,
            "side": _ref("Side"),
            "price": _DECIMAL,
            "quantity": _INT,
            "liquidity": _ref("Liquidity"),
            "fee": _DECIMAL,
        },
    ),
    "TrailingRoyalties": _object(
        "Royalties of the trailing twelve months (accounts.trailing_royalties).",
        {
            "ttm_royalties": _DECIMAL,
            "ttm_royalties_per_unit": _DECIMAL,
            "ttm_yield_percent_at_last_price": _DECIMAL_OR_NULL,
            "distributions": _INT,
        },
    ),
    "InstrumentSummary": _object(
        "One instrument of instruments.list (Gateway._instrument_view).",
        {
            "symbol": _TEXT,
            "patent_id": _TEXT,
            "title": _TEXT,
            "currency": _TEXT,
            "tick_size": _DECIMAL,
            "lot_size_units": _INT,
            "total_units": _INT,
            "maker_fee_bps": _INT,
            "taker_fee_bps": _INT,
            "trading_mode": _ref("TradingMode"),
            "phase": _ref("Phase"),
            "reference_price": _DECIMAL_OR_NULL,
            "last_price": _DECIMAL_OR_NULL,
            "price_band": {**_list_of(_DECIMAL_OR_NULL), "description": "[low, high]"},
        },
    ),
}

RESULTS: dict[str, dict[str, Any]] = {
    "session.logon": _object(
        "The account logged on, and its role.", {"account": _TEXT, "role": _ref("Role")}
    ),
    "session.cancel_on_disconnect": _object(
        "What the session now cancels when its connection ends.",
        {"cancel_on_disconnect": _BOOL, "scope": {"enum": ["account", "session"]}},
    ),
    "order.place": _ref("OrderView"),
    "order.cancel": _ref("OrderView"),
    "order.amend": _ref("OrderView"),
    "order.status": {"anyOf": [_ref("OrderView"), _ref("RejectedOrderView")]},
    "orders.open": _object("The account's open orders.", {"orders": _list_of(_ref("OrderView"))}),
    "account.balances": _object(
        "Every balance of the account, by asset (a currency or a symbol).",
        {
            "account": _TEXT,
            "balances": {"type": "object", "additionalProperties": _ref("Balance")},
        },
    ),
    "account.fills": _object(
        "The account's fills the gateway keeps (since complete_from_seq; truncated: older "
        "ones of the account were dropped).",
        {
            "account": _TEXT,
            "fills": _list_of(_ref("AccountFill")),
            "complete_from_seq": _INT,
            "truncated": _BOOL,
        },
    ),
    "account.royalties": _object(
        "The account's royalty payments, and the trailing figures of what it holds or held "
        "(accounts.royalties_view).",
        {
            "account": _TEXT,
            "payments": _list_of(
                _object(
                    "One payment.",
                    {
                        "symbol": _TEXT,
                        "period_id": _TEXT,
                        "seq": _INT,
                        "ts_ns": _INT,
                        "units_held": _INT,
                        "total_units": _INT,
                        "amount": _DECIMAL,
                        "currency": _TEXT,
                    },
                )
            ),
            "instruments": _list_of(
                {
                    "allOf": [_ref("TrailingRoyalties")],
                    **_object(
                        "One instrument held or paid.",
                        {"symbol": _TEXT, "units_held": _INT, "currency": _TEXT},
                    ),
                }
            ),
        },
    ),
    "instruments.list": _object(
        "Every instrument, by symbol.", {"instruments": _list_of(_ref("InstrumentSummary"))}
    ),
    "instrument.info": _object(
        "Patent metadata, terms, phase, bands, last price and trailing royalties "
        "(accounts.instrument_info).",
        {
            "symbol": _TEXT,
            "patent": {"type": "object", "description": "The listing's patent metadata."},
            "issuer_account": _TEXT,
            "currency": _TEXT,
            "total_units": _INT,
            "tick_size": _DECIMAL,
            "lot_size_units": _INT,
            "maker_fee_bps": _INT,
            "taker_fee_bps": _INT,
            "trading_mode": _ref("TradingMode"),
            "phase": _ref("Phase"),
            "phase_until_ns": _INT,
            "reference_price": _DECIMAL_OR_NULL,
            "last_price": _DECIMAL_OR_NULL,
            "static_band": _list_of(_DECIMAL_OR_NULL),
            "dynamic_band": _list_of(_DECIMAL_OR_NULL),
            "trade_count": _INT,
            "volume_units": _INT,
            "royalties": _ref("TrailingRoyalties"),
        },
    ),
    "book.snapshot": _object(
        "The book's price levels now; seq is the exchange's journal seq.",
        {
            "symbol": _TEXT,
            "phase": _ref("Phase"),
            "seq": _INT,
            "bids": _LEVELS,
            "asks": _LEVELS,
        },
    ),
    "executions.subscribe": _object(
        "seq: the number of the account's last execution report; the next push is seq + 1.",
        {"channel": {"const": "executions"}, "seq": _INT},
    ),
    "md.subscribe": _object(
        "Per channel, the seq of the snapshot pushed first.",
        {"symbol": _TEXT, "channels": {"type": "object", "additionalProperties": _INT}},
    ),
    "md.unsubscribe": _object("The channels left.", {"symbol": _TEXT, "channels": _list_of(_TEXT)}),
    "subscribe": _object(
        "seq: of the snapshot pushed first (executions: of the account's last report).",
        {"channel": _TEXT, "symbol": _TEXT, "seq": _INT},
        optional=("symbol",),
    ),
    "unsubscribe": _object("The channel left.", {"channel": _TEXT, "symbol": _TEXT}),
}


def _event_view(kind: type[Any]) -> dict[str, Any]:
    # decimal_view: a decimal string beside each field in ticks or minor units (when the
    # instrument or currency is known), and for an order's report exec_type and ord_status.
    extras = {
        name.removesuffix("_ticks").removesuffix("_minor"): _DECIMAL
        for name in kind.__struct_fields__
        if name.endswith(("_ticks", "_minor"))
    }
    if kind in ORDER_REPORTS:
        extras["exec_type"] = {
            "enum": ["new", "trade", "replaced", "canceled", "expired", "rejected"]
        }
        extras["ord_status"] = {
            "enum": ["open", "partially_filled", "filled", "canceled", "rejected"]
        }
    view: dict[str, Any] = {"allOf": [_ref(kind.__name__)]}
    if extras:
        view["properties"] = extras
    return view


def _result(method: str) -> dict[str, Any]:
    kind = EVENT_RESULTS.get(method)
    if kind is not None:
        return {
            **_event_view(kind),
            "description": f"The {kind.__struct_config__.tag} event (exchange/events.py "
            f"{kind.__name__}), with decimal strings beside its ticks and minor units.",
        }
    return RESULTS[method]


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
            "description": "Success: the method's result; each method's reply names its own "
            "(the <method>_result schemas).",
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


def _result_schema(method: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": f"Success of {method}.",
        "properties": {
            "id": {"type": "string", "minLength": 1, "maxLength": 64},
            "status": {"const": 200},
            "result": _result(method),
        },
        "required": ["id", "status", "result"],
    }


def _schemas() -> dict[str, Any]:
    types: list[Any] = sorted(set(protocol.METHODS.values()), key=lambda kind: kind.__name__)
    types += (*PUSH_TYPES, *OTHER_PUSH_TYPES, mqtt_publisher.InstrumentReference)
    types.append(events.Event)  # Results and execution reports carry the exchange's events.
    _, components = msgspec.json.schema_components(types, ref_template=SCHEMAS + "{name}")
    # The push types its event as a dict (the view adds decimal strings): typed here.
    private = sorted(events.PRIVATE_EVENTS, key=lambda kind: kind.__name__)
    report = components["ExecutionReportPush"]["properties"]
    report["event"] = {
        "description": "The exchange's event (exchange/events.py, by its type), with decimal "
        "strings beside its ticks and minor units, and for orders exec_type and ord_status.",
        "anyOf": [_event_view(kind) for kind in private],
    }
    components.update(_envelopes())
    components["PublisherState"] = {
        "type": "string",
        "enum": [mqtt_publisher.ONLINE.decode(), mqtt_publisher.OFFLINE.decode()],
        "description": "Plain text (not JSON): the publisher's state.",
    }
    components.update(RESULT_COMPONENTS)
    components.update(_redis_schemas())
    for method in protocol.METHODS:
        components[f"{_key(method)}_result"] = _result_schema(method)
    return dict(sorted(components.items()))


def _message(name: str, schema_ref: str, summary: str) -> dict[str, Any]:
    return {"name": name, "summary": summary, "payload": {"$ref": SCHEMAS + schema_ref}}


def _gateway_channel() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Return the WebSocket channel, its operations, and the request schemas."""
    messages: dict[str, Any] = {
        "error": _message("error", "ErrorResponse", "A refused or failed request."),
    }
    operations: dict[str, Any] = {}
    requests: dict[str, Any] = {}
    channel_ref = {"$ref": "#/channels/gateway"}
    for method, params in sorted(protocol.METHODS.items()):
        key = _key(method)
        requests[f"{key}_request"] = _request_schema(method, params)
        messages[f"{key}_request"] = _message(method, f"{key}_request", f"{method} request.")
        messages[f"{key}_result"] = _message(f"{key}_result", f"{key}_result", f"{method} done.")
        operations[key] = {
            "action": "receive",
            "channel": channel_ref,
            "summary": f"{method}" + (" (operator)" if method.startswith("op.") else ""),
            "messages": [{"$ref": f"#/channels/gateway/messages/{key}_request"}],
            "reply": {
                "channel": channel_ref,
                "messages": [
                    {"$ref": f"#/channels/gateway/messages/{key}_result"},
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
            "identifier": {
                "description": "The publisher's MQTT client id, e.g. ipx-gateway-3f2a9c81d0b7: "
                "the same for every run of one exchange (gateway.server.mqtt_identifier)."
            }
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


# Redis (gateway/redis_publisher.py): what a consumer reads. Redis holds text: integers are
# digit strings; a side without a price is "".
_DIGITS: dict[str, Any] = {"type": "string", "pattern": "^[0-9]+$"}
_PRICE_OR_EMPTY: dict[str, Any] = {
    "type": "string",
    "description": "A decimal string; empty when the side (or the last price) has none.",
}
_SYMBOL_EXAMPLE = "RS-US10123456B2"


def _redis_schemas() -> dict[str, Any]:
    operator_types = sorted(str(k.__struct_config__.tag) for k in redis_publisher.OPERATOR_EVENTS)
    operator_names = ", ".join(k.__name__ for k in redis_publisher.OPERATOR_EVENTS)
    md_names = ", ".join(k.__name__ for k in PUSH_TYPES if k is not market_data.Heartbeat)
    schemas = {
        "RedisMarketDataEntry": _object(
            "One market-data message of the symbol, at stream id <journal_seq>-<index>.",
            {
                "journal_seq": _DIGITS,
                "channel": {"enum": sorted(market_data.CHANNELS)},
                "symbol": _TEXT,
                "data": {
                    **_TEXT,
                    "contentMediaType": "application/json",
                    "description": "The message as the WebSocket pushes it (JSON text): "
                    f"{md_names}, by its channel.",
                },
            },
        ),
        "RedisOperatorEntry": _object(
            "One operator event, at stream id <journal_seq>-<index>.",
            {
                "journal_seq": _DIGITS,
                "type": {"enum": operator_types},
                "data": {
                    **_TEXT,
                    "contentMediaType": "application/json",
                    "description": f"The exchange's event as JSON text ({operator_names}, by "
                    "its type; exchange/events.py): ticks and minor units, no decimal strings.",
                },
            },
        ),
        "RedisGapEntry": _object(
            "Outcomes first_journal_seq to journal_seq were not written (dropped past the "
            "backlog bound, or a run stopped with them unwritten): read them from the journal "
            "or the WebSocket's snapshots. At stream id <journal_seq>-"
            f"{redis_publisher.GAP_INDEX}.",
            {
                "journal_seq": _DIGITS,
                "channel": {"const": "gap"},
                "first_journal_seq": _DIGITS,
                "dropped_outcomes": _DIGITS,
            },
        ),
        "RedisTickerHash": _object(
            "The symbol's last ticker.",
            {
                "journal_seq": _DIGITS,
                "seq": _DIGITS,
                "ts_ns": _DIGITS,
                "last_price": _PRICE_OR_EMPTY,
                "best_bid": _PRICE_OR_EMPTY,
                "best_bid_units": _DIGITS,
                "best_ask": _PRICE_OR_EMPTY,
                "best_ask_units": _DIGITS,
                "volume_units": _DIGITS,
                "trade_count": _DIGITS,
            },
        ),
        "RedisBboHash": _object(
            "The symbol's best bid and offer, from its last ticker.",
            {
                "journal_seq": _DIGITS,
                "best_bid": _PRICE_OR_EMPTY,
                "best_bid_units": _DIGITS,
                "best_ask": _PRICE_OR_EMPTY,
                "best_ask_units": _DIGITS,
            },
        ),
        "RedisPublisherHash": _object(
            "The journal seq of the last outcome the publisher wrote.",
            {"last_journal_seq": _DIGITS},
        ),
    }
    for schema in schemas.values():
        schema["additionalProperties"] = False
    return schemas


def _redis_channels() -> tuple[dict[str, Any], dict[str, Any]]:
    prefix, example = REDIS_PREFIX, _SYMBOL_EXAMPLE
    symbol = {
        "symbol": {
            "description": "The instrument's symbol. The braces around it stay in the key (a "
            "Redis Cluster hash tag, keeping the symbol's keys in one slot): "
            f"{redis_publisher.stream_key(prefix, example)}."
        }
    }
    keys = (
        # channel key, address, with a symbol, kind, messages (name, schema), description.
        (
            "redis_instrument_events",
            f"{prefix}:{{symbol}}:events",
            "stream",
            (("entry", "RedisMarketDataEntry"), ("gap", "RedisGapEntry")),
            "Every market-data message of the symbol (book.l2, book.l3, trades, ticker, "
            "status; no heartbeats), in journal order; trimmed with MAXLEN ~ (about "
            f"{redis_publisher.STREAM_MAX:,} entries).",
        ),
        (
            "redis_operator_events",
            redis_publisher.operator_key(prefix),
            "stream",
            (("entry", "RedisOperatorEntry"), ("gap", "RedisGapEntry")),
            "Operator events: phase changes (halts included), listings, issuance, offerings, "
            "royalty distributions; trimmed with MAXLEN ~ (about "
            f"{redis_publisher.OPERATOR_STREAM_MAX:,} entries).",
        ),
        (
            "redis_ticker",
            f"{prefix}:{{symbol}}:ticker",
            "hash",
            (("hash", "RedisTickerHash"),),
            "The symbol's last ticker, replaced at each.",
        ),
        (
            "redis_bbo",
            f"{prefix}:{{symbol}}:bbo",
            "hash",
            (("hash", "RedisBboHash"),),
            "The symbol's best bid and offer, replaced at each ticker.",
        ),
        (
            "redis_publisher",
            redis_publisher.publisher_key(prefix),
            "hash",
            (("hash", "RedisPublisherHash"),),
            "Where the publisher is in the journal (a next run marks what it missed as a gap).",
        ),
    )
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for key, address, kind, messages, description in keys:
        channels[key] = {
            "address": address,
            "title": f"Redis {kind} {address}",
            "description": f"{description} Keys start with the prefix of `ipx serve "
            f"--redis-prefix` ({prefix} by default).",
            "servers": [{"$ref": "#/servers/redis"}],
            "messages": {
                name: {"name": f"{key}_{name}", "payload": _ref(schema)}
                for name, schema in messages
            },
        }
        if "{symbol}" in address:
            channels[key]["parameters"] = symbol
        operations[f"write_{key}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{key}"},
            "summary": ("XADD, " if kind == "stream" else "HSET, ")
            + "after each outcome is durable.",
            "messages": [{"$ref": f"#/channels/{key}/messages/{name}"} for name, _ in messages],
        }
    return channels, operations


def document() -> dict[str, Any]:
    """Build the whole AsyncAPI 3.0 document."""
    gateway, gateway_operations, requests = _gateway_channel()
    mqtt, mqtt_operations = _mqtt_channels()
    redis, redis_operations = _redis_channels()
    schemas = _schemas()
    schemas.update(requests)
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "IPX exchange API",
            "version": VERSION,
            "description": "The IPX gateway's WebSocket API (requests, responses, pushes), "
            "its public market data over MQTT v5, and its Redis streams and hashes (MQTT and "
            "Redis with ipx serve --mqtt-url, --redis-url). Prices and cash are decimal "
            "strings, quantities integer units. Generated by gateway/asyncapi.py.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "gateway": {
                "host": f"localhost:{serve_cli.DEFAULT_PORT}",
                "protocol": "ws",
                "description": "The gateway; authenticate with a bearer token on the upgrade "
                "or a session.logon first frame.",
            },
            "broker": {"host": "localhost:1883", "protocol": "mqtt", "protocolVersion": "5"},
            "redis": {
                "host": "localhost:6379",
                "protocol": "redis",
                "description": "Redis, written by the gateway: a fan-out layer, not the "
                "source of truth.",
            },
        },
        "channels": {"gateway": gateway, **mqtt, **redis},
        "operations": {**gateway_operations, **mqtt_operations, **redis_operations},
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
