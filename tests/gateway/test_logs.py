"""Operations: the gateway's log lines are JSON objects a log shipper can index by order."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import cli, logs
from gateway.client import RequestFailed
from gateway.server import run_server
from tests.gateway.conftest import SYMBOL, list_the_market, prepare_data_dir

ORDER_FIELDS = ("journal_seq", "order_id", "cl_ord_id", "account", "symbol")


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The JSON lines of the ipx loggers at DEBUG, as `ipx serve` installs them."""
    stream = io.StringIO()
    handler = logs.handler("json", stream)
    logger = logging.getLogger("ipx")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def test_a_record_becomes_one_json_line_with_its_extra_fields() -> None:
    record = logging.makeLogRecord(
        {"name": "ipx.x", "levelno": 20, "levelname": "INFO", "msg": "a\nb %d", "args": (7,)}
    )
    record.journal_seq = 3
    line = logs.JsonFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["message"] == "a\nb 7" and parsed["journal_seq"] == 3
    assert parsed["level"] == "INFO" and parsed["logger"] == "ipx.x"
    assert parsed["ts"].endswith("Z")


def test_an_unknown_log_format_is_refused() -> None:
    with pytest.raises(ValueError):
        logs.handler("xml")


@pytest.mark.asyncio
async def test_rejections_and_trades_are_logged_with_their_order_fields(
    tmp_path: Path, captured: io.StringIO
) -> None:
    venue = prepare_data_dir(os.fspath(tmp_path))
    async with run_server(venue.data_dir) as running:
        venue.url = running.url
        await list_the_market(venue)
        alice, issuer = await venue.client("alice"), await venue.client("issuer")
        try:
            with pytest.raises(RequestFailed):
                await alice.place(SYMBOL, "buy", 10, "500.00")  # Outside the price band.
            await alice.place(SYMBOL, "buy", 10, "100.00")
            await issuer.place(SYMBOL, "sell", 10, "100.00")
        finally:
            await alice.close()
            await issuer.close()
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    assert all({"ts", "level", "logger", "message"} <= line.keys() for line in lines)
    orders = [line for line in lines if line["logger"] == "ipx.gateway.orders"]
    for line in orders:
        assert all(name in line for name in ORDER_FIELDS), line
    rejected = [line for line in orders if line["message"].startswith("order rejected")]
    assert len(rejected) == 1 and rejected[0]["level"] == "INFO"
    assert rejected[0]["account"] == "alice" and rejected[0]["symbol"] == SYMBOL
    assert rejected[0]["order_id"] == 0 and rejected[0]["journal_seq"] > 0
    fills = [line for line in orders if line["message"] == "trade"]
    assert sorted(line["account"] for line in fills) == ["alice", "issuer"]
    assert len({line["trade_id"] for line in fills}) == 1
    assert all(line["level"] == "INFO" and line["order_id"] > 0 for line in fills)
    accepted = [line for line in orders if line["message"] == "OrderAccepted"]
    assert len(accepted) >= 2 and all(line["level"] == "DEBUG" for line in accepted)


def test_ipx_serve_logs_json_unless_told_text() -> None:
    parser = cli.build_parser()
    assert parser.parse_args(["serve", "--data-dir", "d"]).log_format == "json"
    assert parser.parse_args(["serve", "--data-dir", "d", "--log-format", "text"]).log_format == (
        "text"
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--data-dir", "d", "--log-format", "xml"])


def test_install_replaces_the_root_handlers_with_one_json_handler() -> None:
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    try:
        installed = logs.install("json", logging.INFO)
        assert root.handlers == [installed] and root.level == logging.INFO
        assert isinstance(installed.formatter, logs.JsonFormatter)
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved:
            root.addHandler(handler)
        root.setLevel(level)
