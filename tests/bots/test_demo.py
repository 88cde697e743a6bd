"""`ipx demo`: a new user sees a live market within seconds, in the dashboard, with bots.

Rules:
- `ipx demo` starts the exchange on a data dir, lists the sample patents, prints the dashboard
  URL (operator token in the fragment) and an investor's credentials, and runs the bots.
- Within seconds the offerings uncross and continuous trading starts: the dashboard, opened in
  headless Chromium from the printed URL, shows prices that change with no reload.
- The operator halts an instrument from the page (confirmed), and its phase reads "halted".
- Ctrl-C (SIGINT) ends it cleanly: the bots' consistency check and `ipx ledger verify` pass,
  exit status 0. A screenshot of the page is taken; with IPX_UPDATE_SCREENSHOTS=1 it replaces
  docs/dashboard.png (otherwise a test run leaves the checkout as it found it).
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import re
import select
import shutil
import signal
import subprocess
import sys
import time

import pytest
from playwright.async_api import Dialog, async_playwright

from bots.sample_patents import SAMPLE_PATENTS
from tests.gateway.conftest import chromium_executable

pytestmark = pytest.mark.asyncio

REPO = pathlib.Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "docs" / "dashboard.png"
IPX = [sys.executable, "-m", "gateway.cli"]
START_S = 30.0
WAIT_MS = 20_000
EXIT_S = 60.0
SYMBOL = SAMPLE_PATENTS[0].symbol
ROW = f'tr[data-symbol="{SYMBOL}"]'


def _read_until_dashboard(process: subprocess.Popen[str], lines: list[str]) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.5)
        if not ready:
            continue
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        match = re.search(r"dashboard \(operator\): (http://\S+)", line)
        if match:
            return match.group(1)
    raise AssertionError(f"no dashboard URL within {START_S} s:\n{''.join(lines)}")


async def test_the_demo_shows_a_live_market_in_the_dashboard(tmp_path: pathlib.Path) -> None:
    executable = chromium_executable()
    command = [*IPX, "demo", "--data-dir", str(tmp_path / "data"), "--port", "0"]
    command += ["--duration", "90s", "--seed", "7"]
    process = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    lines: list[str] = []
    dialogs: list[str] = []

    async def accept(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        await dialog.accept()

    try:
        url = await asyncio.to_thread(_read_until_dashboard, process, lines)
        assert url.startswith("http://127.0.0.1:") and "#token=" in url
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=executable, headless=True, args=["--no-sandbox"]
            )
            try:
                page = await browser.new_page(viewport={"width": 1440, "height": 1100})
                page.on("dialog", accept)
                await page.goto(url, timeout=WAIT_MS)
                for patent in SAMPLE_PATENTS:  # Every sample patent is listed.
                    await page.wait_for_selector(
                        f'tr[data-symbol="{patent.symbol}"]', timeout=WAIT_MS
                    )
                # The offering uncrosses, then the bots trade: the last price appears, then moves.
                last = f"{ROW} td.last"
                await page.wait_for_function(
                    "(s) => /\\d/.test(document.querySelector(s).textContent)",
                    arg=last,
                    timeout=WAIT_MS,
                )
                first = (await page.text_content(last) or "").strip()
                await page.wait_for_function(
                    "([s, before]) => document.querySelector(s).textContent.trim() !== before",
                    arg=[last, first],
                    timeout=WAIT_MS,
                )
                # Halt from the page, confirmed; the phase follows.
                await page.click(
                    f'button[data-action="halt"][data-symbol="{SYMBOL}"]', timeout=WAIT_MS
                )
                await page.wait_for_function(
                    "(s) => document.querySelector(s).textContent === 'halted'",
                    arg=f"{ROW} td.phase",
                    timeout=WAIT_MS,
                )
                assert dialogs == [f"Halt trading in {SYMBOL}?"]
                await asyncio.sleep(1.0)  # Let the charts draw a little more history.
                await page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
                if os.environ.get("IPX_UPDATE_SCREENSHOTS") == "1":
                    shutil.copyfile(tmp_path / "dashboard.png", SCREENSHOT)
            finally:
                await browser.close()
        process.send_signal(signal.SIGINT)
        rest, _ = await asyncio.to_thread(process.communicate, None, EXIT_S)
        output = "".join(lines) + rest
        assert process.returncode == 0, output
        assert "consistency (" in output and "): passed" in output, output
        assert "ipx ledger verify: passed" in output, output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
