"""`ipx demo`: a live market out of the box — the exchange, sample patents, bots, a dashboard.

    ipx demo [--data-dir DIR] [--host 127.0.0.1] [--port 8700] [--duration 0] [--seed 1]
             [--plot DIR]

Steps: open (or reopen) the data dir — a new temporary one by default — with an operator and a
demo investor account and their tokens; start the exchange in this process on the embedded
default (file journal, no Redis, no broker); list the sample patents (bots/sample_patents.py),
issue their shares at the bots' fair value, fund the demo investor; print the dashboard URL
(operator token in its fragment) and the investor's credentials; then run the bots
(bots/simulation.py), which open an offering for each new instrument, bid in it, and trade
once the opening auction uncrosses. Every ROYALTY_EVERY_S a licensee's royalty payment for
the next patent is distributed to its holders (informed bots react; the dashboard's feed
shows it). Runs until Ctrl-C, or --duration seconds.

Exit codes: those of `ipx bots` (bots/run_config.py) once the market runs; before that, 2
when its exchange cannot start, as `ipx serve` (the port is taken, another server holds the
data dir, the journal is damaged or does not replay under this version's rules).

Invariants:
- Nothing bypasses the API: listing, issuance, deposits and distributions are op.* requests
  of the operator session, journaled like any command.
- A reopened data dir keeps its market: patents already listed are not listed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import tempfile
import time
from dataclasses import dataclass

from bots import fair_value, market, simulation
from bots.sample_patents import SAMPLE_PATENTS, SamplePatent
from exchange.commands import Role
from gateway import event_loop, protocol, sessions
from gateway.admin_cli import create_account
from gateway.client import IpxClient
from gateway.serve_cli import (
    OPERATOR_ACCOUNT,
    STARTUP_ERRORS,
    is_new_data_dir,
    report_startup_error,
)
from gateway.server import run_server

INVESTOR_ACCOUNT = "demo-investor"
INVESTOR_CASH_MINOR = {"USD": 25_000_000, "EUR": 25_000_000}  # 250,000.00 each.
OWNER_CASH_MINOR = 500_000_000  # 5,000,000.00: licensees' payments the owners pass through.
ROYALTY_EVERY_S = 45.0
OFFERING_S = 3.0
FOREVER_S = 10 * 365 * 86_400.0  # "Until Ctrl-C".


@dataclass(frozen=True)
class DemoConfig:
    data_dir: str | None
    host: str
    port: int
    duration_s: float  # 0: until Ctrl-C.
    seed: int
    plot_dir: str | None = None  # At the end, the bots' price, spread and depth charts.


def prepare(data_dir: str) -> tuple[str, str, bool]:
    """Open the operator and investor accounts on a new dir; issue tokens; (op, investor, new)."""
    new = is_new_data_dir(data_dir)
    if new:
        create_account(data_dir, OPERATOR_ACCOUNT, Role.OPERATOR)
        create_account(data_dir, INVESTOR_ACCOUNT, Role.INVESTOR)
    operator_token, _ = sessions.issue_token(data_dir, OPERATOR_ACCOUNT)
    investor_token, _ = sessions.issue_token(data_dir, INVESTOR_ACCOUNT)
    return operator_token, investor_token, new


def reference_price(patent: SamplePatent, now_ts_ns: int) -> str:
    """The fair value per unit (bots/fair_value.py) as a decimal string in the currency."""
    tick_minor = protocol.amount_to_minor(patent.tick_size, patent.currency)
    ticks = fair_value.fair_value_ticks(
        protocol.amount_to_minor(patent.trailing_royalties, patent.currency),
        patent.total_units,
        fair_value.seconds_to_expiry(patent.expiry_date, now_ts_ns),
        tick_minor,
    )
    assert ticks > 0, f"{patent.patent_id} has no value"
    return protocol.minor_to_amount(ticks * tick_minor, patent.currency)


async def list_samples(operator: IpxClient) -> list[str]:
    """List, issue and fund what the sample market needs; return the symbols."""
    listed = {i["symbol"] for i in (await operator.request("instruments.list"))["instruments"]}
    for patent in SAMPLE_PATENTS:
        if patent.symbol in listed:
            continue
        await operator.request(
            "op.open_account", {"account_id": patent.owner_account, "role": "issuer"}
        )
        await operator.request(
            "op.list_asset",
            {
                "patent_id": patent.patent_id,
                "title": patent.title,
                "jurisdiction": patent.jurisdiction,
                "owner_account": patent.owner_account,
                "filing_date": patent.filing_date,
                "expiry_date": patent.expiry_date,
                "cpc_class": patent.cpc_class,
                "licensees": list(patent.licensees),
                "royalty_terms": patent.royalty_terms,
                "currency": patent.currency,
                "trailing_royalties": patent.trailing_royalties,
            },
        )
        await operator.request(
            "op.issue_shares",
            {
                "patent_id": patent.patent_id,
                "symbol": patent.symbol,
                "issuer_account": patent.owner_account,
                "total_units": patent.total_units,
                "currency": patent.currency,
                "tick_size": patent.tick_size,
                "reference_price": reference_price(patent, time.time_ns()),
                "maker_fee_bps": 5,
                "taker_fee_bps": 20,
                "opening_auction_ns": 2_000_000_000,
            },
        )
        await market.deposit(operator, patent.owner_account, patent.currency, OWNER_CASH_MINOR)
    for currency, amount_minor in INVESTOR_CASH_MINOR.items():
        await market.deposit(operator, INVESTOR_ACCOUNT, currency, amount_minor)
    return [patent.symbol for patent in SAMPLE_PATENTS]


async def distribute_royalties(operator: IpxClient, stop: asyncio.Event) -> None:
    """Every ROYALTY_EVERY_S, pay the next patent's quarterly royalty to its holders."""
    for round_index in itertools.count():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), ROYALTY_EVERY_S)
        if stop.is_set():
            return
        patent = SAMPLE_PATENTS[round_index % len(SAMPLE_PATENTS)]
        period = f"demo-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
        result = await operator.request(
            "op.distribute_royalty",
            {
                "symbol": patent.symbol,
                "amount": patent.quarterly_royalty,
                "payer_account": patent.owner_account,
                "period_id": period,
            },
        )
        print(f"royalty: {patent.symbol} paid {patent.quarterly_royalty} ({result})", flush=True)


LIVE = "IPX demo: the exchange is live at"  # Printed once it serves (bench/crash_soak.py).


def banner(host: str, port: int, data_dir: str, operator_token: str, investor: str) -> str:
    base = f"http://{host}:{port}"
    return "\n".join(
        [
            "",
            f"{LIVE} ws://{host}:{port}/ (data in {data_dir})",
            f"  dashboard (operator): {base}/#token={operator_token}",
            f"  operator token:       {operator_token}",
            f"  investor account:     {INVESTOR_ACCOUNT}, token {investor}",
            f"  try: ipx client book --url ws://{host}:{port}/ --token {investor} "
            f"{SAMPLE_PATENTS[0].symbol}",
            "  Ctrl-C stops the bots, then the exchange (drained, fsynced, snapshotted).",
            "",
        ]
    )


async def run_demo(config: DemoConfig) -> int:
    data_dir = config.data_dir or tempfile.mkdtemp(prefix="ipx-demo-")
    os.makedirs(data_dir, exist_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        try:  # A taken port or a locked data dir is a one-line message and exit 2, as in serve.
            operator_token, investor_token, _ = prepare(data_dir)
            running = await stack.enter_async_context(
                run_server(data_dir, config.host, config.port)
            )
        except STARTUP_ERRORS as error:
            return report_startup_error("ipx demo", error)
        url = running.url
        operator = await IpxClient.connect(url, operator_token)
        try:
            symbols = await list_samples(operator)
            print(
                banner(running.host, running.port, data_dir, operator_token, investor_token),
                flush=True,
            )
            royalties = asyncio.create_task(distribute_royalties(operator, stop))
            bots = simulation.BotsConfig(
                url=url,
                symbols=symbols,
                duration_s=config.duration_s or FOREVER_S,
                seed=config.seed,
                data_dir=data_dir,
                token=operator_token,
                offering_s=OFFERING_S,
                plot_dir=config.plot_dir,
            )
            code = await simulation.run_bots(bots, stop)
            stop.set()
            await royalties
        finally:
            await operator.close()
    print(f"ipx demo: stopped; the journal stays in {data_dir}", flush=True)
    return code


def main(config: DemoConfig) -> int:
    return event_loop.run(run_demo(config))
