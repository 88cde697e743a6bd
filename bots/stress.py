"""`ipx stress`: drive a constant, open-loop order rate through the real WebSocket API.

Open loop, no coordinated omission: order k of the run is SCHEDULED at start + k / rate, on
connection k mod C, whatever happened to the orders before it; its ack latency is measured
from that scheduled time, so a stall (of the exchange or of this process) shows up as the
latency of every order that should have been sent during it, not as fewer samples. So an
order waits for its answer as long as the latency histogram reaches (ORDER_TIMEOUT_S, of
LATENCY_MAX_US), not the client's default timeout: a late answer is a latency, recorded. An
order whose answer never comes (none within that time, or its connection lost) is counted
as unanswered, apart from the rejections, which are answers.

The market it trades: its own instrument, set up over the API so the load is real trading
(matches, fills, fees) and not only order entry. A stress issuer account is opened and a
fresh patent `XX{RUN}` (symbol RS-XX{RUN}) listed and issued to it (tick 0.10, reference
price 100.00, opening auction 1 ms); all of its units are offered, every stress account bids
for an equal share at 100.00 (resting from pre-open), and after a 0.5 s offering the
instrument trades continuously. Orders are limit buys and sells of 1..ORDER_UNITS_MAX units within
±PRICE_SPREAD_TICKS of 100.00, ORDER_IOC_PPM of them IOC and the rest GTC; a connection
cancels its oldest resting order beyond RESTING_PER_CONNECTION_MAX (cancels are not counted
as orders).

The gateway's limits shape the setup: an account may place ORDER_RATE_PER_S orders a second
(then 429 RATE_LIMITED, counted as a rejection), and a token may hold CONNECTIONS_PER_TOKEN_MAX
connections (each account here has one token), so the load is spread over enough accounts
that each stays below ACCOUNT_RATE_PER_S and at most 16 connections.

Invariants:
- Each connection draws its orders from its own random.Random(seed, connection): the same
  seed gives the same orders in the same slots.
- Latencies are recorded in microseconds in an HDR histogram (3 significant digits).
- Every order sent ends up in exactly one of acked, rejected (by code) and unanswered.
- Every session the run opens is closed at its end, whatever ended it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import secrets
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

from bots import consistency, market
from bots.account_view import AccountView
from bots.report import counts_line, format_percentiles, percentiles_ms, plot_latency
from bots.run_config import RunConfig, SetUpError, run_command
from gateway import heap
from gateway.client import ClientError, IpxClient, RequestFailed, RequestTimedOut
from gateway.server import CONNECTIONS_PER_TOKEN_MAX

ACCOUNT_RATE_PER_S = 400  # Below the gateway's 500/s per account, with room for bursts.
UNITS_PER_ACCOUNT = 10_000
CASH_PER_ACCOUNT_MINOR = 1_000_000_000  # 10,000,000.00
REFERENCE_TICKS = 1_000  # 100.00 at a tick of 0.10.
PRICE_SPREAD_TICKS = 5
ORDER_UNITS_MAX = 10
ORDER_IOC_PPM = 300_000
RESTING_PER_CONNECTION_MAX = 50
OFFERING_S = 0.5
LATENCY_MAX_US = 60_000_000
ORDER_TIMEOUT_S = LATENCY_MAX_US / 1_000_000  # Any later answer would be off the histogram.


@dataclass(kw_only=True)
class StressConfig(RunConfig):
    rate_per_s: int
    connections: int


@dataclass
class Counts:
    sent: int = 0
    acked: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    unanswered: dict[str, int] = field(default_factory=dict)  # Why: TIMEOUT, CONNECTION_LOST.
    cancels: int = 0
    last_ack_ns: int = 0  # perf_counter_ns of the latest ack: the end of the acked window.
    histogram: Any = field(default_factory=lambda: HdrHistogram(1, LATENCY_MAX_US, 3))

    def reject(self, code: str) -> None:
        self.rejected[code] = self.rejected.get(code, 0) + 1

    def unanswer(self, why: str) -> None:
        self.unanswered[why] = self.unanswered.get(why, 0) + 1


def plan(rate_per_s: int, connections: int) -> tuple[int, int]:
    """Return (accounts, connections): enough accounts for the rate and the connections."""
    # At least two: an account's orders never trade with each other (self-trade prevention).
    accounts = max(2, math.ceil(rate_per_s / ACCOUNT_RATE_PER_S))
    accounts = max(accounts, math.ceil(connections / CONNECTIONS_PER_TOKEN_MAX))
    # Connections go to accounts round-robin: a multiple of the accounts gives each the same
    # share of the rate (8 connections over 7 accounts gave one twice the share, and 429s).
    return accounts, math.ceil(max(connections, accounts) / accounts) * accounts


def slot_offsets_ns(rate_per_s: int, duration_s: float, connections: int, connection: int) -> range:
    """Scheduled send times of one connection, in ns after the start: k / rate for its k."""
    total = int(rate_per_s * duration_s)
    # Slot k at k * 1e9 / rate ns; integer division keeps every connection on one grid.
    return range(connection, total, connections)


def slot_ns(slot: int, rate_per_s: int) -> int:
    return slot * 1_000_000_000 // rate_per_s


def order_params(rng: random.Random) -> dict[str, Any]:
    """The next order of a connection: side, units, price in ticks, time in force."""
    side = "buy" if rng.random() < 0.5 else "sell"
    offset = rng.randint(-PRICE_SPREAD_TICKS, PRICE_SPREAD_TICKS)
    # Buys lean up and sells lean down a little, so about half the orders cross.
    price_ticks = REFERENCE_TICKS + (offset if side == "buy" else -offset)
    ioc = rng.randrange(1_000_000) < ORDER_IOC_PPM
    return {
        "side": side,
        "quantity": rng.randint(1, ORDER_UNITS_MAX),
        "price_ticks": price_ticks,
        "time_in_force": "ioc" if ioc else "gtc",
    }


@dataclass
class Connection:
    index: int
    account: str
    client: IpxClient
    rng: random.Random
    resting: deque[int] = field(default_factory=deque)


async def send_one(
    connection: Connection, info: market.InstrumentInfo, scheduled_ns: int, counts: Counts
) -> None:
    order = order_params(connection.rng)
    params = {
        "symbol": info.symbol,
        "cl_ord_id": connection.client.next_cl_ord_id(),
        "side": order["side"],
        "quantity": order["quantity"],
        "price": market.price_text(order["price_ticks"], info),
        "time_in_force": order["time_in_force"],
    }
    counts.sent += 1
    try:
        # request(), not place(): no retry, so a 429 is seen and counted as what it is.
        client = connection.client
        result = await client.request("order.place", params, timeout_s=ORDER_TIMEOUT_S)
    except RequestFailed as error:
        counts.reject(error.code)
        return
    except RequestTimedOut:
        counts.unanswer("TIMEOUT")
        return
    except ClientError:
        counts.unanswer("CONNECTION_LOST")
        return
    counts.acked += 1
    counts.last_ack_ns = time.perf_counter_ns()
    latency_us = (counts.last_ack_ns - scheduled_ns) // 1000
    counts.histogram.record_value(min(max(1, latency_us), LATENCY_MAX_US))
    if result["status"] in ("open", "partially_filled"):
        connection.resting.append(result["order_id"])
        if len(connection.resting) > RESTING_PER_CONNECTION_MAX:
            await cancel_oldest(connection, counts)


async def cancel_oldest(connection: Connection, counts: Counts) -> None:
    order_id = connection.resting.popleft()
    counts.cancels += 1
    # Filled meanwhile (404/409): nothing to cancel, nothing to count.
    with contextlib.suppress(ClientError):
        await connection.client.request("order.cancel", {"order_id": order_id})


async def drive(
    connection: Connection,
    info: market.InstrumentInfo,
    config: StressConfig,
    start_ns: int,
    counts: Counts,
    in_flight: set[asyncio.Task[None]],
) -> None:
    """Fire this connection's orders at their scheduled times, never waiting for answers."""
    for slot in slot_offsets_ns(
        config.rate_per_s, config.duration_s, config.connections, connection.index
    ):
        scheduled_ns = start_ns + slot_ns(slot, config.rate_per_s)
        # Never early: a loop's timers may fire up to half a millisecond before the delay is
        # up (uvloop keeps time in whole milliseconds), and an early send would shorten the
        # latency measured from the schedule.
        while (delay_ns := scheduled_ns - time.perf_counter_ns()) > 0:
            await asyncio.sleep(delay_ns / 1e9)
        task = asyncio.create_task(send_one(connection, info, scheduled_ns, counts))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)


async def set_up_instrument(
    operator: IpxClient, data_dir: str, run_id: str, accounts: int
) -> tuple[str, str]:
    """List and issue the stress patent to a stress issuer; return (symbol, issuer account)."""
    issuer = f"stress-{run_id}-issuer"
    await market.open_bot_account(operator, data_dir, issuer, "issuer")
    patent = f"XX{run_id.upper()}"  # XX: no real patent office; the id rule is two letters.
    symbol = f"RS-{patent}"
    await operator.request(
        "op.list_asset",
        {
            "patent_id": patent,
            "title": "IPX stress test instrument",
            "jurisdiction": "US",
            "owner_account": issuer,
            "filing_date": "2020-01-01",
            "expiry_date": "2040-01-01",
            "cpc_class": "G06Q 40/04",
            "currency": "USD",
            "licensees": ["Load Test Ltd"],
            "royalty_terms": "none: a load-test instrument",
            "trailing_royalties": "0",
        },
    )
    await operator.request(
        "op.issue_shares",
        {
            "patent_id": patent,
            "symbol": symbol,
            "issuer_account": issuer,
            "total_units": accounts * UNITS_PER_ACCOUNT,
            "currency": "USD",
            "tick_size": "0.10",
            "reference_price": "100.00",
            "maker_fee_bps": 10,
            "taker_fee_bps": 25,
            "opening_auction_ns": 1_000_000,
        },
    )
    return symbol, issuer


async def set_up(
    config: StressConfig, operator: IpxClient, sessions: contextlib.AsyncExitStack
) -> tuple[list[Connection], dict[str, AccountView], market.InstrumentInfo]:
    """Accounts, cash, tokens, connections; the stress instrument sold to them in an offering.

    Each session opened is closed by `sessions`, also when a later step fails.
    """
    if config.data_dir is None:
        raise SetUpError("--data-dir is needed: its tokens are issued on the server's host")
    accounts, config.connections = plan(config.rate_per_s, config.connections)
    run_id = secrets.token_hex(3)
    symbol, _ = await set_up_instrument(operator, config.data_dir, run_id, accounts)
    info = await market.instrument_info(operator, symbol)
    tokens, views = {}, {}
    for number in range(accounts):
        account = f"stress-{run_id}-{number}"
        tokens[account] = await market.open_bot_account(operator, config.data_dir, account)
        views[account] = AccountView(account, {symbol: info.terms})
    connections = []
    for index in range(config.connections):
        account = f"stress-{run_id}-{index % accounts}"
        client = await market.connect(config.url, tokens[account])
        sessions.push_async_callback(client.close)
        if index < accounts:  # The first connection of each account keeps its view.
            views[account].last_seq = (await client.subscribe_executions())["seq"]
            await market.deposit(operator, account, "USD", CASH_PER_ACCOUNT_MINOR)
            # A bid resting in pre-open joins the offering opened below.
            await client.place(symbol, "buy", UNITS_PER_ACCOUNT, "100.00")
        rng = random.Random(f"{config.seed}/{index}")
        connections.append(Connection(index, account, client, rng))
    await operator.request(
        "op.open_offering",
        {
            "symbol": symbol,
            "units": accounts * UNITS_PER_ACCOUNT,
            "min_price": "100.00",
            "end_ts_ns": time.time_ns() + int(OFFERING_S * 1000) * 1_000_000,
        },
    )
    await market.wait_for_phase(operator, symbol, {"continuous"})
    return connections, views, await market.instrument_info(operator, symbol)


async def run_stress(config: StressConfig) -> int:
    """Set up, drive the rate for the duration, wait for the answers, check; print the report.

    Every session it opens is closed when it ends, whatever ended it.

    Raises:
        SetUpError, RequestFailed: the run cannot start as configured (bots/cli.py: exit 2).
        Unreachable, ClientError: the exchange cannot be reached, or stopped answering
            before the run could start or be checked (exit 3).
    """
    async with contextlib.AsyncExitStack() as sessions:
        operator = await market.operator_client(
            config.url, config.token, config.data_dir, config.operator
        )
        sessions.push_async_callback(operator.close)
        connections, views, info = await set_up(config, operator, sessions)
        return await _run(config, operator, connections, views, info)


async def _run(
    config: StressConfig,
    operator: IpxClient,
    connections: Sequence[Connection],
    views: dict[str, AccountView],
    info: market.InstrumentInfo,
) -> int:
    print(
        f"stress {info.symbol}: {config.rate_per_s} orders/s for {config.duration_s:g} s over "
        f"{config.connections} connections of {len(views)} accounts",
        flush=True,
    )
    # This process's own pauses would be measured as the exchange's latency: its full garbage
    # collections, scanning the accounts' views as they grow, took 20-70 ms (at 2,500/s, the
    # p99.9 of 75-97 ms was mostly this driver's, not the server's).
    heap.settle()
    counts = Counts()
    in_flight: set[asyncio.Task[None]] = set()
    start_ns = time.perf_counter_ns() + 100_000_000  # Everyone starts on the same grid.
    drivers = [
        asyncio.create_task(drive(c, info, config, start_ns, counts, in_flight))
        for c in connections
    ]
    reporter = asyncio.create_task(progress(counts, start_ns))
    await asyncio.gather(*drivers)
    # Every order in flight ends by itself: answered, or unanswered after ORDER_TIMEOUT_S
    # (cancels after the client's timeout). Progress lines go on meanwhile.
    while in_flight:
        await asyncio.wait(set(in_flight))
    reporter.cancel()
    return await finish(config, connections, views, info, operator, counts, start_ns)


async def progress(counts: Counts, start_ns: int) -> None:
    acked_before = 0
    while True:
        await asyncio.sleep(1.0)
        elapsed_s = (time.perf_counter_ns() - start_ns) / 1e9
        p99 = percentiles_ms(counts.histogram).get("p99")
        p99_text = f"{p99:.2f} ms" if p99 is not None else "-"
        print(
            f"[{elapsed_s:5.1f}s] sent {counts.sent} acked {counts.acked} "
            f"({counts.acked - acked_before}/s) rejected {sum(counts.rejected.values())} "
            f"unanswered {sum(counts.unanswered.values())} p99 {p99_text}",
            flush=True,
        )
        acked_before = counts.acked


async def finish(
    config: StressConfig,
    connections: Sequence[Connection],
    views: dict[str, AccountView],
    info: market.InstrumentInfo,
    operator: IpxClient,
    counts: Counts,
    start_ns: int,
) -> int:
    firsts = connections[: len(views)]

    def drain() -> None:
        for connection in firsts:
            pushes = connection.client.pushes
            while not pushes.empty():
                views[connection.account].apply_report(pushes.get_nowait())

    pairs = [(views[c.account], c.client) for c in firsts]
    check = await consistency.check_accounts(pairs, drain)
    ledger_dir = config.data_dir if config.verify_ledger else None
    await consistency.check_server(check, config.url, ledger_dir)
    final = await market.instrument_info(operator, info.symbol)
    lines = [
        "",
        f"offered rate     {config.rate_per_s} orders/s for {config.duration_s:g} s "
        f"({config.connections} connections, {len(views)} accounts)",
        f"orders sent      {counts.sent}",
        f"acked            {counts.acked}",
        f"rejected         {sum(counts.rejected.values())} ({counts_line(counts.rejected)})",
        f"unanswered       {sum(counts.unanswered.values())} ({counts_line(counts.unanswered)})",
        # Over the whole window until the last ack: a backlog drained late lowers the rate.
        f"acked orders/s   {acked_per_s(counts, start_ns, config.duration_s):.0f}",
        f"ack latency      {format_percentiles(counts.histogram)}",
        f"cancels sent     {counts.cancels}",
        f"trades           {final.trade_count - info.trade_count} "
        f"({final.volume_units - info.volume_units} units)",
        f"consistency      {'passed' if not check.mismatches else 'FAILED'} "
        f"({check.accounts_checked} accounts)",
    ]
    lines += [f"  {problem}" for problem in check.mismatches + check.notes]
    if check.ledger_verified is not None:
        lines.append(f"ledger verify    {'passed' if check.ledger_verified else 'FAILED'}")
        if not check.ledger_verified:
            lines.append(check.ledger_output)
    lines.append(f"market data      {consistency.MARKET_DATA_STATES[check.market_data_running]}")
    print("\n".join(lines), flush=True)
    if config.plot_dir:
        title = f"ack latency at {config.rate_per_s} orders/s offered"
        path = plot_latency(counts.histogram, config.plot_dir, title)
        if path:
            print(f"wrote {path}")
    return 0 if check.passed else 1


def acked_per_s(counts: Counts, start_ns: int, duration_s: float) -> float:
    window_s = max(duration_s, (counts.last_ack_ns - start_ns) / 1e9)
    return counts.acked / window_s


def main(config: StressConfig) -> int:
    return run_command("stress", config.url, run_stress(config))
