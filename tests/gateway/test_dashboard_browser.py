"""The operator dashboard in a real browser (headless Chromium) against a live exchange.

Rules:
- The page served at /dashboard logs on with the token of its URL fragment, and the token
  leaves the address bar once read.
- The spread column shows ask - bid and (ask - bid) / mid in bps, rounded down, from the
  ticker's quote (the same definition as the "liquidity" channel's quoted spread): only for
  a two-sided quote in continuous trading (bid < ask). In an auction, whose book may be
  crossed, it shows "—" and the flags no_two_sided_quote, never a negative spread.
- An instrument issued while the page is open appears in it (a row, a card, the operator's
  symbol list) within INSTRUMENTS_REFRESH_MS (the page's, 5 s) with no reload.
- While traders trade, the page's last price for the instrument changes with no reload.
- An operator halts the instrument with the page's Halt button: the page asks for
  confirmation, sends op.halt, shows the result, and the phase cell reads "halted", as the
  exchange itself answers; Resume brings it back to continuous trading the same way.
- A 1 s volatility auction started from the page shows as "auction", then continuous again;
  "Cancel all orders" for an account, confirmed, leaves it no open order.
- With an investor's token the page shows the market but no operator controls.
- The page raises no script error and logs no console error meanwhile.
- A screenshot of the page is kept in the test's tmp_path (tests/bots/test_demo.py keeps the
  one at docs/dashboard.png: the demo's market, with bots).

Chromium is Debian's (/usr/bin/chromium, driven by Playwright with executable_path; never
`playwright install`). Without it the test is skipped, except under CI, where it fails.
Every wait is bounded; the whole test takes well under 30 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import time

import pytest
from playwright.async_api import ConsoleMessage, Dialog, Page, async_playwright

from gateway.client import RequestFailed
from gateway.server import RunningServer
from tests.gateway.conftest import SYMBOL, Venue, chromium_executable

pytestmark = pytest.mark.asyncio

REPO = pathlib.Path(__file__).resolve().parents[2]
TRADE_PRICES = ["100.00", "100.50", "101.00", "100.30", "99.80", "100.70"]
TRADE_INTERVAL_S = 0.25
TRADING_ROUNDS_MAX = 120
TRADING_S_MAX = 30.0
WAIT_MS = 10_000  # For any one thing to show in the page.
ROW = f'tr[data-symbol="{SYMBOL}"]'


async def trade(venue: Venue, stop: asyncio.Event) -> int:
    """Trade like a pair of bots until stopped: bounded in rounds and time; return trades.

    Quotes a wide bid (bob, 99.00) and ask (issuer, 102.00) once, then each round alice bids
    one unit and the issuer sells it to her, at prices that move round to round. Orders
    refused while the market is halted are skipped.
    """
    alice, bob, issuer = [await venue.client(name) for name in ("alice", "bob", "issuer")]
    trades = 0
    try:
        await bob.place(SYMBOL, "buy", 20, "99.00")
        await issuer.place(SYMBOL, "sell", 20, "102.00")
        deadline = time.monotonic() + TRADING_S_MAX
        for round_number in range(TRADING_ROUNDS_MAX):
            if stop.is_set() or time.monotonic() > deadline:
                break
            price = TRADE_PRICES[round_number % len(TRADE_PRICES)]
            try:
                await alice.place(SYMBOL, "buy", 1, price)
                sold = await issuer.place(SYMBOL, "sell", 1, price, time_in_force="ioc")
                trades += sold["filled"]
            except RequestFailed:
                pass  # Halted or in an auction: the next round tries again.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), TRADE_INTERVAL_S)
    finally:
        for client in (alice, bob, issuer):
            await client.close()
    return trades


async def _cell(page: Page, name: str) -> str:
    return (await page.text_content(f"{ROW} td.{name}") or "").strip()


async def _wait_for_cell(page: Page, name: str, expected: str) -> None:
    await page.wait_for_function(
        "([selector, expected]) => document.querySelector(selector)?.textContent === expected",
        arg=[f"{ROW} td.{name}", expected],
        timeout=WAIT_MS,
    )


async def _phase_on_server(venue: Venue) -> str:
    client = await venue.client("op")
    try:
        listing = await client.request("instruments.list")
    finally:
        await client.close()
    phase: str = listing["instruments"][0]["phase"]
    return phase


async def _operator_click(page: Page, method: str, button: str = "") -> str:
    """Click the instrument's operator button (data-action, default the method's name)."""
    action = button or method
    await page.click(f'button[data-action="{action}"][data-symbol="{SYMBOL}"]', timeout=WAIT_MS)
    await page.wait_for_function(
        "(method) => document.querySelector('#operator-result').textContent.startsWith(method)",
        arg=f"op.{method}",
        timeout=WAIT_MS,
    )
    return (await page.text_content("#operator-result") or "").strip()


async def test_dashboard_shows_live_prices_and_halts_with_confirmation(
    market: Venue, server: RunningServer, tmp_path: pathlib.Path
) -> None:
    executable = chromium_executable()
    stop = asyncio.Event()
    traders = asyncio.create_task(trade(market, stop))
    dialogs: list[str] = []
    errors: list[str] = []  # Uncaught exceptions and console errors of the page.

    async def accept(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        await dialog.accept()

    def console_error(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=executable, headless=True, args=["--no-sandbox"]
            )
            try:
                page = await browser.new_page(viewport={"width": 1440, "height": 1000})
                page.on("dialog", accept)
                page.on("pageerror", lambda error: errors.append(str(error)))
                page.on("console", console_error)
                token = market.tokens["op"]
                await page.goto(
                    f"http://127.0.0.1:{server.port}/dashboard#token={token}", timeout=WAIT_MS
                )
                await page.wait_for_selector(f"{ROW} td.last", timeout=WAIT_MS)
                assert token not in page.url
                await _wait_for_cell(page, "phase", "continuous")

                # Prices move while the traders trade, with no reload.
                await page.wait_for_function(
                    "(selector) => /\\d/.test(document.querySelector(selector).textContent)",
                    arg=f"{ROW} td.last",
                    timeout=WAIT_MS,
                )
                first = await _cell(page, "last")
                await page.wait_for_function(
                    "([selector, before]) => document.querySelector(selector).textContent "
                    "!== before",
                    arg=[f"{ROW} td.last", first],
                    timeout=WAIT_MS,
                )
                assert await _cell(page, "last") != first

                # The quotes 99.00 / 102.00: spread 3.00, 3.00 / 100.50 = 298.5 bps, rounded
                # down (between rounds; during one, alice's bid is briefly the best).
                await _wait_for_cell(page, "spread", "3.00 (298 bps)")

                # Halt through the page, confirmed; the page and the exchange agree.
                result = await _operator_click(page, "halt")
                assert dialogs == [f"Halt trading in {SYMBOL}?"]
                assert "done" in result, result
                await _wait_for_cell(page, "phase", "halted")
                assert await _phase_on_server(market) == "halted"
                assert "→ halted" in (await page.text_content("#feed") or "")

                # Resume: an opening auction of 1 ms, then continuous trading again.
                result = await _operator_click(page, "resume")
                assert dialogs[-1] == f"Resume trading in {SYMBOL}?" and "done" in result
                await _wait_for_cell(page, "phase", "continuous")
                assert await _phase_on_server(market) == "continuous"
                resumed = await _cell(page, "last")
                await page.wait_for_function(
                    "([selector, before]) => document.querySelector(selector).textContent "
                    "!== before",
                    arg=[f"{ROW} td.last", resumed],
                    timeout=WAIT_MS,
                )

                # A 1 s volatility auction from the page: the phase reads auction, then the
                # uncross brings continuous trading back.
                await page.fill("#auction-seconds", "1")
                result = await _operator_click(page, "start_auction", "auction")
                assert dialogs[-1] == f"Start a 1 s volatility auction in {SYMBOL}?", dialogs
                assert "done" in result, result
                await _wait_for_cell(page, "phase", "auction")
                await _wait_for_cell(page, "phase", "continuous")

                # Cancel all of bob's orders from the operator panel, confirmed.
                bob = await market.client("bob")
                try:
                    assert (await bob.request("orders.open"))["orders"], "bob has no order"
                    await page.fill("#cancel-all-account", "bob")
                    await page.click("#cancel-all-form button[type=submit]", timeout=WAIT_MS)
                    await page.wait_for_function(
                        "() => document.querySelector('#operator-result').textContent"
                        ".startsWith('op.cancel_all')",
                        timeout=WAIT_MS,
                    )
                    assert dialogs[-1] == "Cancel every open order of bob?", dialogs
                    assert "done" in (await page.text_content("#operator-result") or "")
                    assert (await bob.request("orders.open"))["orders"] == []
                finally:
                    await bob.close()

                # An investor's token: the same market, no operator controls.
                investor = await browser.new_page()
                await investor.goto(
                    f"http://127.0.0.1:{server.port}/dashboard#token={market.tokens['alice']}",
                    timeout=WAIT_MS,
                )
                await investor.wait_for_selector(f"{ROW} td.last", timeout=WAIT_MS)
                assert await investor.is_hidden("#operator-panel")
                assert await investor.is_hidden(
                    f'button[data-action="halt"][data-symbol="{SYMBOL}"]'
                )
                await investor.close()

                assert errors == []
                await page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            finally:
                await browser.close()
    finally:
        stop.set()
        trades = await asyncio.wait_for(traders, TRADING_S_MAX)
    assert trades > 0


LATE_PATENT, LATE_SYMBOL = "US20000002B2", "RS-US20000002B2"
INSTRUMENTS_REFRESH_MS = 5_000  # dashboard.js's INSTRUMENTS_REFRESH_MS.


async def _issue_late_instrument(venue: Venue) -> None:
    op = await venue.client("op")
    try:
        await op.request(
            "op.list_asset",
            {
                "patent_id": LATE_PATENT,
                "title": "Late listing",
                "jurisdiction": "US",
                "owner_account": "issuer",
                "filing_date": "2016-01-01",
                "expiry_date": "2036-01-01",
                "cpc_class": "H04L 9/32",
                "licensees": [],
                "royalty_terms": "1% of net sales",
                "currency": "USD",
                "trailing_royalties": "0.00",
            },
        )
        await op.request(
            "op.issue_shares",
            {
                "patent_id": LATE_PATENT,
                "symbol": LATE_SYMBOL,
                "issuer_account": "issuer",
                "total_units": 1_000,
                "currency": "USD",
                "tick_size": "0.10",
                "reference_price": "100.00",
            },
        )
    finally:
        await op.close()


async def test_no_spread_without_a_continuous_two_sided_quote_and_new_instruments_appear(
    market: Venue, server: RunningServer
) -> None:
    executable = chromium_executable()
    errors: list[str] = []
    alice, issuer, op = [await market.client(name) for name in ("alice", "issuer", "op")]
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=executable, headless=True, args=["--no-sandbox"]
            )
            try:
                page = await browser.new_page(viewport={"width": 1440, "height": 1000})
                page.on("pageerror", lambda error: errors.append(str(error)))
                page.on(
                    "console",
                    lambda message: (
                        errors.append(message.text) if message.type == "error" else None
                    ),
                )
                await page.goto(
                    f"http://127.0.0.1:{server.port}/dashboard#token={market.tokens['op']}",
                    timeout=WAIT_MS,
                )
                await _wait_for_cell(page, "phase", "continuous")
                await alice.place(SYMBOL, "buy", 5, "99.00")
                await issuer.place(SYMBOL, "sell", 5, "102.00")
                # 3.00 / 100.50 = 298.5 bps, rounded down.
                await _wait_for_cell(page, "spread", "3.00 (298 bps)")

                # In an auction the bids may cross the asks: no quote, so no spread.
                await op.request(
                    "op.start_auction", {"symbol": SYMBOL, "duration_ns": 60_000_000_000}
                )
                await _wait_for_cell(page, "phase", "auction")
                assert await _cell(page, "spread") == "—"
                await alice.place(SYMBOL, "buy", 3, "101.00")
                await issuer.place(SYMBOL, "sell", 3, "100.00")
                times = "\N{MULTIPLICATION SIGN}"  # Between price and units.
                await _wait_for_cell(page, "bid", f"101.00 {times} 3")
                await _wait_for_cell(page, "ask", f"100.00 {times} 3")
                await _wait_for_cell(page, "flags", "no_two_sided_quote")
                assert await _cell(page, "spread") == "—"

                # A share class issued now shows up, with no reload.
                await _issue_late_instrument(market)
                late = f'tr[data-symbol="{LATE_SYMBOL}"]'
                await page.wait_for_selector(late, timeout=INSTRUMENTS_REFRESH_MS + WAIT_MS)
                await page.wait_for_function(
                    "(selector) => document.querySelector(selector).textContent === 'pre_open'",
                    arg=f"{late} td.phase",
                    timeout=WAIT_MS,
                )
                assert await page.is_visible(f'article.card[data-symbol="{LATE_SYMBOL}"]')
                options = await page.eval_on_selector_all(
                    "#cancel-all-symbol option", "(options) => options.map((o) => o.value)"
                )
                assert options == ["", SYMBOL, LATE_SYMBOL]
                assert await page.locator(f'tr[data-symbol="{SYMBOL}"]').count() == 1
                assert errors == []
            finally:
                await browser.close()
    finally:
        for client in (alice, issuer, op):
            await client.close()
