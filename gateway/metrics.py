"""Prometheus metrics of one gateway, served as text on /metrics (DESIGN.md §7).

Built on prometheus_client (the reference client: its text exposition, label escaping and
cumulative histogram buckets are what Prometheus itself is tested against), each `Metrics`
with its own CollectorRegistry so that two gateways in one process, or two tests, never share
a series. Names carry the `ipx_` prefix and base units (seconds, bytes; money in minor units).

    ipx_orders_total{result}                 order.place outcomes: accepted, rejected, duplicate
    ipx_rejects_total{reason}                every rejection, by its stable code: the core's
                                             and the gateway's (refused before the core)
    ipx_trades_total{symbol}                 trades executed
    ipx_traded_notional_minor_total{symbol,currency}  price x quantity, in minor units
    ipx_ack_latency_seconds                  request in -> response out (histogram)
    ipx_fsync_latency_seconds                one journal batch's append + fsync (histogram)
    ipx_sequencer_queue_depth                commands waiting for the sequencer
    ipx_journal_seq                          the last journaled seq
    ipx_connections                          open WebSocket connections
    ipx_connections_refused_total            TCP connections aborted at accept (over a cap)
    ipx_slow_consumer_disconnects_total      sessions closed for not reading their pushes
    ipx_build_info{version,python}           always 1
    ipx_publisher_published_total{sink}      written to the sink (redis: outcomes; mqtt: entries)
    ipx_publisher_dropped_total{sink}        dropped by the sink's bounded buffer (same units)
    ipx_publisher_refused_total{sink}        refused by the sink (redis: outcomes whose ids the
                                             streams had passed: another journal's keys)
    ipx_publisher_backlog{sink}              waiting to be written (same units)
    ipx_publisher_lag_seconds{sink}          batch durable -> the sink reports it written
                                             (histogram, sampled by the gateway)

Liquidity (gateway/liquidity.py, read from its tracker when scraped; labelled by symbol;
ratios are plain ratios, 0.002 for 20 bps; a figure that does not exist now, such as the
spread of a one-sided book, has no sample):
    ipx_liquidity_quoted_spread_ratio        (ask - bid) / mid now
    ipx_liquidity_time_weighted_spread_ratio over the rolling window, two-sided time only
    ipx_liquidity_two_sided_ratio            share of the window with a bid and an ask
    ipx_liquidity_depth_units{side,within_bps}  units resting within 10/50/100 bps of mid
    ipx_liquidity_window_volume_units        traded in the window
    ipx_liquidity_window_trades
    ipx_liquidity_day_volume_units           since 00:00 UTC
    ipx_liquidity_day_trades
    ipx_liquidity_day_notional_minor         price x quantity, minor units
    ipx_liquidity_turnover_ratio             day units / units issued
    ipx_liquidity_effective_spread_ratio     window mean of 2 |price - mid before| / mid
    ipx_liquidity_amihud_per_million_minor   |day return| per million minor units traded
    ipx_liquidity_order_to_trade_ratio       orders entered / trades, over the day
    ipx_liquidity_royalty_yield_ratio        trailing-twelve-month royalties / last price
    ipx_liquidity_expiry_seconds             time left to the patent's expiry
    ipx_liquidity_flag{flag}                 1 when raised (no_two_sided_quote, wide_spread)

Invariants:
- The counters are a function of the outcomes observed: observing the same outcomes in a fresh
  Metrics gives the same values (no clock is read here; latencies are measured by the caller).
- Gauges that mirror state (queue depth, journal seq, connections) are read when scraped, from
  callables, so they cannot drift from what they describe.
"""

from __future__ import annotations

import bisect
import http
import platform
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import NamedTuple

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Response

from exchange.core import Outcome
from exchange.events import CommandRejected, OrderAccepted, OrderRejected, TradeExecuted
from exchange.state import Instrument
from gateway.liquidity import DEPTH_BPS, NO_TWO_SIDED_QUOTE, WIDE_SPREAD, LiquidityMessage

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST  # text/plain; version=0.0.4

# Acks are expected at 0.1-1 ms (an fsync is 0.2-0.4 ms here); buckets reach a second so that
# a stall shows as a stall, not as +Inf alone.
ACK_BUCKETS_S = (
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip
FSYNC_BUCKETS_S = (
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 1.0,
)  # fmt: skip

# An integration keeps up in milliseconds; an outage shows as seconds to a minute.
LAG_BUCKETS_S = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip

PLACE_ORDER_KIND = "place_order"  # The journal record kind of an order.place.

# The "_created" series prometheus_client adds per counter and histogram hold the process start
# time: one more series per label set that Prometheus does not need (it detects resets itself).
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # Unannotated.


class SinkCounts(NamedTuple):
    """One integration's counters, read from its publisher when scraped."""

    sink: str
    published: int
    dropped: int
    backlog: int
    refused: int = 0


class LoopHistogram:
    """A histogram observed only from the event loop's thread, so it takes no lock.

    prometheus_client's Histogram takes two locks and walks the buckets per observation (about
    1.5 us); the ack latency is observed once per answer. The exposition is the same (a
    collector of this registry): cumulative buckets with le labels as prometheus_client
    formats them, +Inf, _sum and _count.
    """

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        if list(buckets) != sorted(set(buckets)):
            raise ValueError(f"{name}: buckets must be distinct and ascending")
        self.name, self.documentation = name, documentation
        self.bounds = tuple(buckets)
        self.labels = [*map(floatToGoString, self.bounds), "+Inf"]  # Each bucket's "le".
        self.counts = [0] * (len(self.bounds) + 1)  # The last: above every bound (+Inf only).
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left finds the first bound >= value: Prometheus's "le" (less or equal).
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.name, self.documentation)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation)
        cumulative, buckets = 0, []
        for le, count in zip(self.labels, self.counts, strict=True):
            cumulative += count
            buckets.append((le, float(cumulative)))
        family.add_metric([], buckets, self.sum)
        yield family


class _CounterCollector:
    """A counter kept elsewhere (a plain int), read at each scrape."""

    def __init__(self, name: str, documentation: str, read: Callable[[], int]) -> None:
        self.name, self.documentation, self.read = name, documentation, read

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.documentation)

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.documentation, value=self.read())


class _SinkCollector:
    """Mirrors the publishers' own counters at each scrape, so they cannot drift."""

    def __init__(self, sinks: Callable[[], Iterable[SinkCounts]]) -> None:
        self.sinks = sinks

    def describe(self) -> Iterator[Metric]:
        # The names alone, without reading the publishers (which may not exist yet).
        return self._families([])

    def collect(self) -> Iterator[Metric]:
        return self._families(self.sinks())

    def _families(self, sinks: Iterable[SinkCounts]) -> Iterator[Metric]:
        published = CounterMetricFamily(
            "ipx_publisher_published", "Written to the integration.", labels=["sink"]
        )
        dropped = CounterMetricFamily(
            "ipx_publisher_dropped", "Dropped by the integration's bounded buffer.", labels=["sink"]
        )
        backlog = GaugeMetricFamily(
            "ipx_publisher_backlog", "Waiting to be written to the integration.", labels=["sink"]
        )
        refused = CounterMetricFamily(
            "ipx_publisher_refused",
            "Refused by the integration (Redis: ids its streams had passed, another journal's).",
            labels=["sink"],
        )
        for counts in sinks:
            published.add_metric([counts.sink], counts.published)
            dropped.add_metric([counts.sink], counts.dropped)
            backlog.add_metric([counts.sink], counts.backlog)
            refused.add_metric([counts.sink], counts.refused)
        yield from (published, dropped, backlog, refused)


_BPS = 10_000
_PPM = 1_000_000
_FLAGS = (NO_TWO_SIDED_QUOTE, WIDE_SPREAD)
# name suffix, help, the figure in base units (None: no sample).
_LIQUIDITY_FIGURES: tuple[tuple[str, str, Callable[[LiquidityMessage], float | None]], ...] = (
    (
        "quoted_spread_ratio",
        "Quoted spread over mid, now.",
        lambda m: None if m.quoted_spread_bps is None else m.quoted_spread_bps / _BPS,
    ),
    (
        "time_weighted_spread_ratio",
        "Time-weighted quoted spread over mid in the rolling window (two-sided time).",
        lambda m: None if m.time_weighted_spread_bps is None else m.time_weighted_spread_bps / _BPS,
    ),
    (
        "two_sided_ratio",
        "Share of the rolling window with a two-sided quote.",
        lambda m: m.two_sided_ppm / _PPM,
    ),
    ("window_volume_units", "Units traded in the rolling window.", lambda m: m.window_volume_units),
    ("window_trades", "Trades in the rolling window.", lambda m: m.window_trades),
    ("day_volume_units", "Units traded since 00:00 UTC.", lambda m: m.day_volume_units),
    ("day_trades", "Trades since 00:00 UTC.", lambda m: m.day_trades),
    (
        "day_notional_minor",
        "Traded value since 00:00 UTC, minor units.",
        lambda m: m.day_notional_minor,
    ),
    ("turnover_ratio", "Units traded today over units issued.", lambda m: m.turnover_ppm / _PPM),
    (
        "effective_spread_ratio",
        "Mean effective spread of the window's trades, over mid.",
        lambda m: None if m.effective_spread_bps is None else m.effective_spread_bps / _BPS,
    ),
    (
        "amihud_per_million_minor",
        "Amihud illiquidity: absolute day return per million minor units traded.",
        lambda m: (
            None if m.amihud_ppb_per_million_minor is None else m.amihud_ppb_per_million_minor / 1e9
        ),
    ),
    (
        "order_to_trade_ratio",
        "Orders entered per trade, over the day.",
        lambda m: None if m.order_to_trade_milli is None else m.order_to_trade_milli / 1_000,
    ),
    (
        "royalty_yield_ratio",
        "Trailing-twelve-month royalties per unit over the last price.",
        lambda m: None if m.royalty_yield_bps is None else m.royalty_yield_bps / _BPS,
    ),
    ("expiry_seconds", "Time left to the patent's expiry.", lambda m: m.seconds_to_expiry),
)


class _LiquidityCollector:
    """Mirrors the liquidity tracker's figures at each scrape (floats only here, at the edge)."""

    def __init__(self, figures: Callable[[], Iterable[LiquidityMessage]]) -> None:
        self.figures = figures

    def describe(self) -> Iterator[Metric]:
        return self._families([])

    def collect(self) -> Iterator[Metric]:
        return self._families(self.figures())

    def _families(self, messages: Iterable[LiquidityMessage]) -> Iterator[Metric]:
        families = [
            (GaugeMetricFamily(f"ipx_liquidity_{name}", text, labels=["symbol"]), figure)
            for name, text, figure in _LIQUIDITY_FIGURES
        ]
        depth = GaugeMetricFamily(
            "ipx_liquidity_depth_units",
            "Units resting within a distance of mid (inclusive), per side.",
            labels=["symbol", "side", "within_bps"],
        )
        flag = GaugeMetricFamily(
            "ipx_liquidity_flag", "1 when a liquidity flag is raised.", labels=["symbol", "flag"]
        )
        for message in messages:
            symbol = message.symbol
            for family, figure in families:
                value = figure(message)
                if value is not None:
                    family.add_metric([symbol], value)
            levels = (message.depth_10bps, message.depth_50bps, message.depth_100bps)
            for bps, (bid_units, ask_units) in zip(DEPTH_BPS, levels, strict=True):
                depth.add_metric([symbol, "bid", str(bps)], bid_units)
                depth.add_metric([symbol, "ask", str(bps)], ask_units)
            for name in _FLAGS:
                flag.add_metric([symbol, name], 1 if name in message.flags else 0)
        yield from (family for family, _ in families)
        yield from (depth, flag)


class Metrics:
    """The gateway's metrics in their own registry; `render` gives the exposition text."""

    def __init__(
        self,
        instruments: Mapping[str, Instrument],
        *,
        version: str = "0.1.0",
        queue_depth: Callable[[], int] | None = None,
        journal_seq: Callable[[], int] | None = None,
        connections: Callable[[], int] | None = None,
        connections_refused: Callable[[], int] | None = None,
        sinks: Callable[[], Iterable[SinkCounts]] | None = None,
        liquidity: Callable[[], Iterable[LiquidityMessage]] | None = None,
    ) -> None:
        """Create the metrics in a registry of their own.

        Args:
            instruments: the exchange's instruments (a live mapping), for a trade's tick size
                and currency.
            version: the ipx_build_info version label.
            queue_depth, journal_seq, connections: read at each scrape; a gauge without one
                stays 0.
            connections_refused: the TCP connections aborted at accept so far (a counter).
            sinks: the integrations' counters, read at each scrape (none without it).
            liquidity: the liquidity figures of every symbol, read at each scrape.
        """
        self.instruments = instruments
        registry = self.registry = CollectorRegistry(auto_describe=True)
        self.orders = Counter(
            "ipx_orders", "order.place outcomes by result.", ["result"], registry=registry
        )
        # Each result's child made once: labels() costs a lookup under a lock per call, and
        # this runs for every command; made up front, each result also scrapes as 0 at start.
        self._orders_accepted = self.orders.labels(result="accepted")
        self._orders_rejected = self.orders.labels(result="rejected")
        self._orders_duplicate = self.orders.labels(result="duplicate")
        self.rejects = Counter(
            "ipx_rejects", "Rejected commands by reason code.", ["reason"], registry=registry
        )
        self.trades = Counter(
            "ipx_trades", "Trades executed, by symbol.", ["symbol"], registry=registry
        )
        self.notional = Counter(
            "ipx_traded_notional_minor",
            "Traded value (price times quantity) in minor units of the currency.",
            ["symbol", "currency"],
            registry=registry,
        )
        self.ack_latency = LoopHistogram(
            "ipx_ack_latency_seconds",
            "Time from a request's arrival to its response being sent.",
            ACK_BUCKETS_S,
        )
        self.fsync_latency = LoopHistogram(
            "ipx_fsync_latency_seconds",
            "Time to append and fsync one journal batch.",
            FSYNC_BUCKETS_S,
        )
        registry.register(self.ack_latency)
        registry.register(self.fsync_latency)
        self.slow_consumer_disconnects = Counter(
            "ipx_slow_consumer_disconnects",
            "Sessions closed because they did not read their pushes.",
            registry=registry,
        )
        for name, help_text, source in (
            ("ipx_sequencer_queue_depth", "Commands waiting for the sequencer.", queue_depth),
            ("ipx_journal_seq", "Seq of the last journaled record.", journal_seq),
            ("ipx_connections", "Open WebSocket connections.", connections),
        ):
            gauge = Gauge(name, help_text, registry=registry)
            if source is not None:
                gauge.set_function(source)
        if connections_refused is not None:
            registry.register(
                _CounterCollector(
                    "ipx_connections_refused",
                    "TCP connections aborted at accept: over a cap (gateway/admission.py).",
                    connections_refused,
                )
            )
        # The integrations' families exist only where integrations can be (a gateway's sinks).
        self.publisher_lag: Histogram | None = None
        if sinks is not None:
            registry.register(_SinkCollector(sinks))
            self.publisher_lag = Histogram(
                "ipx_publisher_lag_seconds",
                "Time from a batch being durable to its integration reporting it written.",
                ["sink"],
                buckets=LAG_BUCKETS_S,
                registry=registry,
            )
        if liquidity is not None:
            registry.register(_LiquidityCollector(liquidity))
        build = Gauge(
            "ipx_build_info", "Build of this gateway.", ["version", "python"], registry=registry
        )
        build.labels(version=version, python=platform.python_version()).set(1)

    def observe_outcomes(self, outcomes: Iterable[Outcome]) -> None:
        """Count a batch of commands' order results, rejections and trades.

        Tallied in plain ints and added once per batch: a prometheus_client counter takes a
        lock per inc(), and this sees every command.
        """
        accepted = rejected = duplicate = 0
        rejects: dict[str, int] = {}
        trades: dict[str, list[int]] = {}  # symbol -> [trades, sum of price ticks x units]
        for outcome in outcomes:
            reply = outcome.reply
            replied_now = False
            for event in outcome.events:
                if isinstance(event, TradeExecuted):
                    tally = trades.get(event.symbol)
                    if tally is None:
                        tally = trades[event.symbol] = [0, 0]
                    tally[0] += 1
                    tally[1] += event.price_ticks * event.quantity_units
                elif event is reply:
                    replied_now = True
                    if isinstance(event, OrderRejected | CommandRejected):
                        reason = event.reason.value
                        rejects[reason] = rejects.get(reason, 0) + 1
            if reply is not None and outcome.record.kind == PLACE_ORDER_KIND:
                # A resent cl_ord_id answers with the first reply, which is not among this
                # command's events: it is neither a second order nor a second rejection.
                if not replied_now:
                    duplicate += 1
                elif isinstance(reply, OrderAccepted):
                    accepted += 1
                elif isinstance(reply, OrderRejected):
                    rejected += 1
        for child, count in (
            (self._orders_accepted, accepted),
            (self._orders_rejected, rejected),
            (self._orders_duplicate, duplicate),
        ):
            if count:
                child.inc(count)
        for reason, count in rejects.items():
            self.rejects.labels(reason=reason).inc(count)
        for symbol, (count, ticks_units) in trades.items():
            terms = self.instruments[symbol].terms
            self.trades.labels(symbol=symbol).inc(count)
            notional = self.notional.labels(symbol=symbol, currency=terms.currency)
            notional.inc(ticks_units * terms.tick_size_minor)

    def observe_edge_rejection(self, code: str | None, method: str | None) -> None:
        """Count a request the gateway refused before the core saw it, by its code.

        Args:
            code: the answer's stable code; None (a failure, not a rejection) counts nothing.
            method: the request's method (None: the frame was not a request); an order.place
                refused counts as a rejected order, as the core's rejections do.
        """
        if code is None:
            return
        self.rejects.labels(reason=code).inc()
        if method == "order.place":
            self._orders_rejected.inc()

    def observe_ack(self, seconds: float) -> None:
        """Record one request's time from arrival to response."""
        self.ack_latency.observe(seconds)

    def observe_fsync(self, seconds: float) -> None:
        """Record one journal batch's append and fsync time."""
        self.fsync_latency.observe(seconds)

    def observe_publisher_lag(self, sink: str, seconds: float) -> None:
        """Record one sampled publish lag of an integration."""
        if self.publisher_lag is not None:
            self.publisher_lag.labels(sink=sink).observe(seconds)

    def slow_consumer_disconnected(self) -> None:
        self.slow_consumer_disconnects.inc()

    def render(self) -> bytes:
        """Return the Prometheus text exposition (version 0.0.4) of every metric."""
        return prometheus_client.generate_latest(self.registry)

    def respond(self, connection: ServerConnection) -> Response:
        """Answer GET /metrics from a websockets `process_request` hook."""
        response = connection.respond(http.HTTPStatus.OK, self.render().decode())
        # Prometheus reads the format version from the content type (0.0.4: text).
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = CONTENT_TYPE
        return response
