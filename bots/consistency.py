"""The end-of-run check: each bot's own view equals the exchange's answers; the journal verifies.

For every account: the totals (available + held) of account.balances, the order ids and
leaves of orders.open, and the (trade_id, order_id, price, quantity) of account.fills must
equal the bot's AccountView, built only from its execution reports. Then, given the server's
data dir, `ipx ledger verify DIR` must exit 0; and the server's market data must still run
(/readyz?verbose): market data that raised switches itself off and trading goes on, so only
this says a run's figures were made without it.

Invariants:
- Compared only once every bot has stopped sending; a report still in flight is waited for
  (up to SETTLE_S, polling), so a mismatch that remains is a real disagreement.
- A fill log that says `truncated` (more fills than the gateway keeps) is reported as not
  comparable rather than as a mismatch.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bots.account_view import AccountView
from gateway import protocol
from gateway.client import IpxClient

SETTLE_S = 5.0
SETTLE_POLL_S = 0.2


@dataclass
class ConsistencyReport:
    accounts_checked: int = 0
    mismatches: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ledger_verified: bool | None = None  # None: no data dir given.
    ledger_output: str = ""
    market_data_running: bool | None = None  # None: not asked, or the server did not say.

    @property
    def passed(self) -> bool:
        return (
            not self.mismatches
            and self.ledger_verified is not False
            and self.market_data_running is not False
        )


async def exchange_answers(client: IpxClient) -> dict[str, Any]:
    # Every page of orders.open and account.fills: a bot may hold more than one page.
    balances, orders, fills = await asyncio.gather(
        client.request("account.balances"), client.open_orders(), client.fills()
    )
    return {"balances": balances, "orders": {"orders": orders}, "fills": fills}


def differences(view: AccountView, answers: dict[str, Any]) -> list[str]:
    """What the bot's view and the exchange's answers disagree on (empty when they agree)."""
    problems = []
    exchange_balances: dict[str, int] = {}
    for asset, entry in answers["balances"]["balances"].items():
        if entry["kind"] == "units":
            total = entry["available"] + entry["held"]
        else:
            total = _minor(entry["available"], asset) + _minor(entry["held"], asset)
        if total:
            exchange_balances[asset] = total
    own_balances = {
        asset: amount for asset, amount in [*view.cash_minor.items(), *view.units.items()] if amount
    }
    if own_balances != exchange_balances:
        problems.append(f"balances: bot {own_balances} exchange {exchange_balances}")
    exchange_orders = {o["order_id"]: o["leaves"] for o in answers["orders"]["orders"]}
    own_orders = {order_id: o.leaves_units for order_id, o in view.open_orders.items()}
    if own_orders != exchange_orders:
        problems.append(f"open orders: bot {own_orders} exchange {exchange_orders}")
    if not answers["fills"]["truncated"]:
        exchange_fills = sorted(
            (f["trade_id"], f["order_id"], f["quantity"]) for f in answers["fills"]["fills"]
        )
        own_fills = sorted((f.trade_id, f.order_id, f.quantity_units) for f in view.fills.values())
        if own_fills != exchange_fills:
            problems.append(f"fills: bot {len(own_fills)} exchange {len(exchange_fills)} differ")
    return [f"{view.account}: {problem}" for problem in problems]


def _minor(amount: str, currency: str) -> int:
    negative = amount.startswith("-")
    value = protocol.amount_to_minor(amount.lstrip("-"), currency)
    return -value if negative else value


async def check_accounts(
    pairs: Sequence[tuple[AccountView, IpxClient]], drain: Any = None
) -> ConsistencyReport:
    """Compare every (view, its client) pair, waiting up to SETTLE_S for late reports.

    `drain` (optional, no arguments) applies the reports received so far to the views.
    """
    report = ConsistencyReport(accounts_checked=len(pairs))
    deadline = time.monotonic() + SETTLE_S
    while True:
        if drain is not None:
            drain()
        problems: list[str] = []
        for view, client in pairs:
            answers = await exchange_answers(client)
            problems += differences(view, answers)
            if answers["fills"]["truncated"]:
                report.notes.append(f"{view.account}: fill log truncated, fills not compared")
            if view.gaps:
                problems.append(f"{view.account}: {view.gaps} gaps in execution reports")
        if not problems or time.monotonic() > deadline:
            report.mismatches = problems
            return report
        report.notes.clear()
        await asyncio.sleep(SETTLE_POLL_S)


def verify_ledger(data_dir: str) -> tuple[bool, str]:
    """Run `ipx ledger verify DATA_DIR`; return (passed, its output)."""
    completed = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "ledger", "verify", data_dir],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return completed.returncode == 0, (completed.stdout + completed.stderr).strip()


async def check_server(report: ConsistencyReport, url: str, ledger_dir: str | None) -> None:
    """Add the server's side to the report: its journal verifies (given its data dir), and its
    market data still runs."""
    if ledger_dir is not None:
        verified = await asyncio.to_thread(verify_ledger, ledger_dir)
        report.ledger_verified, report.ledger_output = verified
    report.market_data_running = await asyncio.to_thread(market_data_running, url)


MARKET_DATA_STATES = {
    True: "running",
    False: "SWITCHED OFF (the server's log says why)",
    None: "unknown",
}


def market_data_running(url: str) -> bool | None:
    """Ask the server at a ws:// or wss:// url whether its market data still runs.

    None when it does not say (an older server, or no answer within the timeout).
    """
    parts = urllib.parse.urlsplit(url)
    scheme = "https" if parts.scheme == "wss" else "http"
    readyz = urllib.parse.urlunsplit((scheme, parts.netloc, "/readyz", "verbose", ""))
    try:
        with urllib.request.urlopen(readyz, timeout=10) as response:
            answer = json.loads(response.read())
    except (OSError, ValueError):
        return None
    running = answer.get("market_data", {}).get("running")
    return running if isinstance(running, bool) else None
