"""The /metrics text: valid Prometheus exposition, and counters that follow the outcomes.

The seeded session replays with IPX_SEED=<seed> (printed on every run).
"""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from exchange.commands import PlaceOrder
from exchange.core import Outcome
from exchange.events import CommandRejected, OrderAccepted, OrderRejected, TradeExecuted
from gateway.metrics import ACK_BUCKETS_S, CONTENT_TYPE, LoopHistogram, Metrics
from tests.exchange.rulebook import BUY, SELL, SYMBOL, TICK_MINOR, USD, Market

SEED = int(os.environ.get("IPX_SEED") or random.SystemRandom().randrange(1 << 32))
STEPS = 400


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parse the rendered text with Prometheus's own parser: (name, labels) -> value."""
    parsed: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            assert isinstance(sample, Sample)
            parsed[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return parsed


def observed(metrics: Metrics, outcome: Outcome) -> None:
    metrics.observe_outcomes([outcome])


def test_every_metric_is_exposed_with_help_type_and_base_units() -> None:
    metrics = Metrics({}, version="1.2.3", queue_depth=lambda: 7, journal_seq=lambda: 42)
    metrics.observe_ack(0.000_3)
    metrics.observe_fsync(0.002)
    metrics.slow_consumer_disconnected()
    text = metrics.render().decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert {name: family.type for name, family in families.items()} == {
        "ipx_orders": "counter",
        "ipx_rejects": "counter",
        "ipx_trades": "counter",
        "ipx_traded_notional_minor": "counter",
        "ipx_ack_latency_seconds": "histogram",
        "ipx_fsync_latency_seconds": "histogram",
        "ipx_sequencer_queue_depth": "gauge",
        "ipx_journal_seq": "gauge",
        "ipx_connections": "gauge",
        "ipx_slow_consumer_disconnects": "counter",
        "ipx_build_info": "gauge",
    }
    assert all(family.documentation for family in families.values())
    assert "_created" not in text
    values = samples(metrics)
    assert values[("ipx_sequencer_queue_depth", ())] == 7
    assert values[("ipx_journal_seq", ())] == 42
    assert values[("ipx_connections", ())] == 0
    assert values[("ipx_slow_consumer_disconnects_total", ())] == 1
    build = [key for key in values if key[0] == "ipx_build_info"]
    assert len(build) == 1 and ("version", "1.2.3") in build[0][1]


def test_histograms_have_cumulative_buckets_sum_and_count() -> None:
    metrics = Metrics({})
    for seconds in (0.000_05, 0.000_3, 0.000_3, 0.004, 2.0):
        metrics.observe_ack(seconds)
    values = samples(metrics)
    buckets = sorted(
        (float(dict(labels)["le"]), value)
        for (name, labels), value in values.items()
        if name == "ipx_ack_latency_seconds_bucket"
    )
    counts = [count for _, count in buckets]
    assert counts == sorted(counts), "buckets are cumulative"
    assert dict(buckets)[0.000_1] == 1 and dict(buckets)[0.000_5] == 3
    assert dict(buckets)[0.005] == 4 and dict(buckets)[float("inf")] == 5
    assert values[("ipx_ack_latency_seconds_count", ())] == 5
    assert abs(values[("ipx_ack_latency_seconds_sum", ())] - 2.004_65) < 1e-9


def test_the_lock_free_histogram_exposes_what_prometheus_clients_own_would() -> None:
    values = [0.000_1, 0.000_05, 0.001, 0.000_999, 0.3, 7.0, 0.0, 0.025, 0.025_000_1]
    theirs_registry = CollectorRegistry()
    theirs = Histogram("h_seconds", "Doc.", buckets=ACK_BUCKETS_S, registry=theirs_registry)
    ours = LoopHistogram("h_seconds", "Doc.", ACK_BUCKETS_S)
    ours_registry = CollectorRegistry()
    ours_registry.register(ours)
    for value in values:  # Bounds themselves included: "le" is less or equal.
        theirs.observe(value)
        ours.observe(value)
    assert generate_latest(ours_registry) == generate_latest(theirs_registry)
    with pytest.raises(ValueError, match="ascending"):
        LoopHistogram("h", "Doc.", (0.1, 0.01))


def test_label_values_are_escaped() -> None:
    metrics = Metrics({}, version='a "quoted"\\ back\nslash')
    values = samples(metrics)
    build = next(labels for name, labels in values if name == "ipx_build_info")
    assert ("version", 'a "quoted"\\ back\nslash') in build


def test_an_order_that_trades_moves_orders_trades_and_notional() -> None:
    market = Market().trading()
    metrics = Metrics(market.exchange.state.instruments)
    state = market.exchange.state
    market.give_units("alice", 100)
    observed(metrics, market.sell("alice", 10, 1_000))
    observed(metrics, market.buy("bob", 4, 1_000))
    observed(metrics, market.do(market.order("bob", BUY, 1, 1_000, cl="c-again")))
    observed(metrics, market.do(market.order("bob", BUY, 1, 1_000, cl="c-again")))
    observed(metrics, market.buy("bob", 1, 1_003))  # Crosses the ask at 1,000.
    observed(metrics, market.sell("nobody", 1, 1_000))
    values = samples(metrics)
    assert state.instruments[SYMBOL].terms.tick_size_minor == TICK_MINOR
    assert values[("ipx_orders_total", (("result", "accepted"),))] == 4
    assert values[("ipx_orders_total", (("result", "duplicate"),))] == 1
    assert values[("ipx_orders_total", (("result", "rejected"),))] == 1
    assert values[("ipx_rejects_total", (("reason", "FORBIDDEN"),))] == 1
    # bob bought 4 at 1,000, then 1 at 1,000 and 1 at the resting ask of 1,000.
    assert values[("ipx_trades_total", (("symbol", SYMBOL),))] == 3
    notional = values[("ipx_traded_notional_minor_total", (("currency", USD), ("symbol", SYMBOL)))]
    assert notional == 6 * 1_000 * TICK_MINOR


def expected_counts(outcomes: list[Outcome]) -> Counter[str]:
    # A naive recount from the events, to compare with what the metrics say.
    counts: Counter[str] = Counter()
    for outcome in outcomes:
        reply = outcome.reply
        new = any(event is reply for event in outcome.events)
        if outcome.record.kind == "place_order":
            if not new:
                counts["orders duplicate"] += 1
            else:
                counts[
                    "orders accepted" if isinstance(reply, OrderAccepted) else "orders rejected"
                ] += 1
        if new and isinstance(reply, OrderRejected | CommandRejected):
            counts[f"reject {reply.reason.value}"] += 1
        for event in outcome.events:
            if isinstance(event, TradeExecuted):
                counts[f"trades {event.symbol}"] += 1
                counts["notional"] += event.price_ticks * event.quantity_units * TICK_MINOR
    return counts


def test_counters_follow_a_seeded_session() -> None:
    print(f"metrics session: IPX_SEED={SEED} steps={STEPS}")
    rng = random.Random(SEED)
    market = Market().trading()
    for account in ("alice", "bob", "carol"):
        market.give_units(account, 500)
    metrics = Metrics(market.exchange.state.instruments)
    outcomes: list[Outcome] = []
    commands: list[PlaceOrder] = []
    # One trade at the reference price first: a seed whose first cross breaks the dynamic
    # band would otherwise leave the whole session in a volatility auction, with no trade.
    for account, side in (("alice", BUY), ("bob", SELL)):
        opening = market.order(account, side, 1, 1_000, cl=f"open-{account}")
        outcomes.append(market.do(opening, 1))
    for step in range(STEPS):
        if commands and rng.random() < 0.05:
            command = rng.choice(commands)  # Resent: answered with its first outcome.
        else:
            account = rng.choice(("alice", "bob", "carol", "mallory"))
            cl = rng.choice(commands).cl_ord_id if commands and rng.random() < 0.03 else f"s{step}"
            side = rng.choice((BUY, SELL))
            price = 1_000 + rng.randint(-30, 30) * rng.choice((1, 1, 1, 5))
            command = market.order(account, side, rng.randint(1, 40), price, cl=cl)
        commands.append(command)
        outcomes.append(market.do(command, rng.randint(1, 1_000_000)))
    counted = 0
    while counted < len(outcomes):  # In batches of any size, as durable batches come.
        batch = outcomes[counted : counted + rng.randint(1, 40)]
        metrics.observe_outcomes(batch)
        counted += len(batch)
    expected = expected_counts(outcomes)
    values = samples(metrics)
    actual: Counter[str] = Counter()
    for (name, labels), value in values.items():
        label = dict(labels)
        if name == "ipx_orders_total":
            actual[f"orders {label['result']}"] += int(value)
        elif name == "ipx_rejects_total":
            actual[f"reject {label['reason']}"] += int(value)
        elif name == "ipx_trades_total":
            actual[f"trades {label['symbol']}"] += int(value)
        elif name == "ipx_traded_notional_minor_total":
            actual["notional"] += int(value)
    assert actual == expected
    assert expected["orders duplicate"] > 0 and expected[f"trades {SYMBOL}"] > 0
    assert any(key.startswith("reject ") for key in expected), "no rejection in the session"
    assert sum(v for k, v in expected.items() if k.startswith("orders ")) == STEPS + 2


@pytest.mark.asyncio
async def test_a_scrape_over_http_gets_the_text_with_the_prometheus_content_type() -> None:
    metrics = Metrics({}, journal_seq=lambda: 9)

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        return metrics.respond(connection) if request.path == "/metrics" else None

    async with serve(lambda connection: asyncio.sleep(0), "127.0.0.1", 0,
                     process_request=process_request) as server:  # fmt: skip
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        raw = await asyncio.wait_for(reader.read(), 5)
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK"
    assert [line for line in lines if line.lower().startswith("content-type")] == [
        f"Content-Type: {CONTENT_TYPE}"
    ]
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert families["ipx_journal_seq"].samples[0].value == 9
