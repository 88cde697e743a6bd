"""Setting up a simulated market over the real API, and reading it back.

How bots get in (the simplest real path): API tokens can only be issued on the exchange's
host, into DATA_DIR/tokens.json (gateway/sessions.py; `ipx tokens issue`), and a running
server picks a new token up at the next logon. So `ipx bots` and `ipx stress` run beside the
server and take its `--data-dir`: an operator session (its token given with --token, or issued
here for --operator) opens each bot's account with op.open_account, funds it with op.deposit,
and a token is issued locally for it. Everything else goes over the WebSocket API.

How bots get units: only an issuer holds units at first, and the only way units reach others
is trading, so for an instrument still in pre-open the operator opens an offering of
OFFERING_SHARE_PPM of the issuer's units (op.open_offering), and the bots bid in it.

Royalty announcements: `latest_distribution` is the one place that says which distribution is
the latest; it reads instrument.info's distribution count today. Switching to the liquidity
channel's `last_distribution_period` is a change to that function alone.

Invariants:
- Prices leave here as ticks (ints) and go out as decimal strings converted exactly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bots import fair_value
from bots.account_view import Terms
from bots.run_config import SetUpError, Unreachable
from gateway import admin_cli, protocol, sessions
from gateway.client import IpxClient
from ledger.errors import JournalError

OFFERING_SHARE_PPM = 200_000  # 20 % of the issuer's units are offered.
OFFERING_MIN_PRICE_PPM = 900_000  # The offering's minimum: 90 % of the fair value.
PHASE_WAIT_S = 30.0


@dataclass(frozen=True, slots=True)
class InstrumentInfo:
    """instrument.info in ticks and minor units."""

    symbol: str
    phase: str
    currency: str
    tick_size_minor: int
    total_units: int
    issuer_account: str
    expiry_date: str
    annual_royalties_minor: int
    distributions: int
    reference_ticks: int
    last_ticks: int
    band_low_ticks: int
    band_high_ticks: int
    trade_count: int
    volume_units: int

    @property
    def terms(self) -> Terms:
        return Terms(self.currency, self.tick_size_minor)

    def fair_ticks(self, now_ts_ns: int) -> int:
        """The model's fair value, clamped into the static band (the exchange refuses beyond)."""
        value = fair_value.fair_value_ticks(
            self.annual_royalties_minor,
            self.total_units,
            fair_value.seconds_to_expiry(self.expiry_date, now_ts_ns),
            self.tick_size_minor,
        )
        if self.band_low_ticks and self.band_high_ticks:
            value = min(max(value, self.band_low_ticks), self.band_high_ticks)
        return value or self.reference_ticks


def _ticks(price: str | None, currency: str, tick_minor: int) -> int:
    return protocol.price_to_ticks(price, currency, tick_minor) if price else 0


def parse_info(info: Mapping[str, Any]) -> InstrumentInfo:
    currency = info["currency"]
    tick = protocol.amount_to_minor(info["tick_size"], currency)
    band = info["dynamic_band"] if info["dynamic_band"][0] else info["static_band"]
    static_low, static_high = info["static_band"]
    low = max(_ticks(band[0], currency, tick), _ticks(static_low, currency, tick))
    highs = [t for t in (_ticks(band[1], currency, tick), _ticks(static_high, currency, tick)) if t]
    listing = protocol.amount_to_minor(info["patent"]["trailing_royalties_at_listing"], currency)
    ttm = protocol.amount_to_minor(info["royalties"]["ttm_royalties"], currency)
    return InstrumentInfo(
        symbol=info["symbol"],
        phase=info["phase"],
        currency=currency,
        tick_size_minor=tick,
        total_units=info["total_units"],
        issuer_account=info["issuer_account"],
        expiry_date=info["patent"]["expiry_date"],
        annual_royalties_minor=fair_value.annual_royalties_minor(listing, ttm),
        distributions=info["royalties"]["distributions"],
        reference_ticks=_ticks(info["reference_price"], currency, tick),
        last_ticks=_ticks(info["last_price"], currency, tick),
        band_low_ticks=low,
        band_high_ticks=min(highs) if highs else 0,
        trade_count=info["trade_count"],
        volume_units=info["volume_units"],
    )


def latest_distribution(info: InstrumentInfo) -> str | None:
    """Name the latest royalty distribution seen (None before the first).

    Today: the count of distributions in instrument.info. With the liquidity channel, return
    its `last_distribution_period` instead; nothing else changes.
    """
    return str(info.distributions) if info.distributions else None


async def instrument_info(client: IpxClient, symbol: str) -> InstrumentInfo:
    return parse_info(await client.request("instrument.info", {"symbol": symbol}))


def price_text(ticks: int, info: InstrumentInfo) -> str:
    return protocol.ticks_to_price(ticks, info.currency, info.tick_size_minor)


async def connect(url: str, token: str) -> IpxClient:
    """Open a session with token.

    Raises:
        Unreachable: no connection could be made (refused, no such host, no answer in time).
        websockets.exceptions.InvalidStatus: the server refused the upgrade (401: the token).
    """
    try:
        return await IpxClient.connect(url, token)
    except (OSError, TimeoutError) as error:
        raise Unreachable(f"cannot connect to {url}: {error}") from error


async def issue_token(data_dir: str, account: str) -> str:
    """Issue a token for account in the data dir's tokens.json (on this host).

    Raises:
        SetUpError: the data dir's tokens cannot be written (no such directory, no access).
    """
    try:
        token, _ = await asyncio.to_thread(sessions.issue_token, data_dir, account)
    except OSError as error:
        raise SetUpError(f"cannot issue a token in {data_dir}: {error}") from error
    return token


async def open_bot_account(
    operator: IpxClient, data_dir: str, account: str, role: str = "investor"
) -> str:
    """Open an account over the API and issue its token on the data dir; return the token."""
    await operator.request("op.open_account", {"account_id": account, "role": role})
    return await issue_token(data_dir, account)


async def deposit(operator: IpxClient, account: str, currency: str, amount_minor: int) -> None:
    amount = protocol.minor_to_amount(amount_minor, currency)
    await operator.request(
        "op.deposit", {"account_id": account, "currency": currency, "amount": amount}
    )


async def operator_client(
    url: str, token: str | None, data_dir: str | None, operator: str
) -> IpxClient:
    """Log the operator on: with its token, or with one issued for it on the data dir."""
    if token is None:
        if data_dir is None:
            raise SetUpError("give --token OPERATOR_TOKEN or --data-dir (to issue one)")
        # As `ipx tokens issue` checks (a mistyped dir or account must get no token).
        try:
            await asyncio.to_thread(admin_cli.check_account_opened, data_dir, operator)
        except (JournalError, admin_cli.NoSuchAccount) as error:
            raise SetUpError(f"cannot issue the operator's token: {error}") from error
        token = await issue_token(data_dir, operator)
    return await connect(url, token)


async def open_offering(
    operator: IpxClient, info: InstrumentInfo, duration_s: float, now_ts_ns: int
) -> int:
    """Offer part of the issuer's units of a pre-open instrument; return the units offered."""
    units = info.total_units * OFFERING_SHARE_PPM // 1_000_000
    min_ticks = max(1, info.fair_ticks(now_ts_ns) * OFFERING_MIN_PRICE_PPM // 1_000_000)
    await operator.request(
        "op.open_offering",
        {
            "symbol": info.symbol,
            "units": units,
            "min_price": price_text(min_ticks, info),
            "end_ts_ns": now_ts_ns + round(duration_s * 1000) * 1_000_000,
        },
    )
    return units


async def wait_for_phase(client: IpxClient, symbol: str, phases: set[str]) -> str:
    """Poll instrument.info until the phase is one of phases (bounded by PHASE_WAIT_S)."""
    deadline = time.monotonic() + PHASE_WAIT_S
    while True:
        phase: str = (await client.request("instrument.info", {"symbol": symbol}))["phase"]
        if phase in phases or time.monotonic() > deadline:
            return phase
        await asyncio.sleep(0.05)
