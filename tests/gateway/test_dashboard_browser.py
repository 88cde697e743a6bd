"""The operator dashboard in a real browser (headless Chromium) against a live exchange.

Rules:
- The page served at /dashboard logs on with the token of its URL fragment, and the token
  leaves the address bar once read.
- The spread column shows ask - bid and (ask - bid) / mid in bps, rounded down, from the
  ticker's quote (the same definition as the "liquidity" channel's quoted spread).
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
