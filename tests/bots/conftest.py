"""A real exchange on 127.0.0.1 (port 0) with one realistic patent still in pre-open.

The market: operator `op`, issuer `issuer` holding all 100,000 units of RS-US10987654B2
(USD, tick 0.10, reference price 70.00, static band 10%: 63.00 to 77.00). Trailing royalties
of 1,200,000.00 a year over ~8 years to expiry (2035-03-01) at 8% give a fair value of about
69 a unit, inside the band. The opening auction after an offering lasts 1 ms.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import pytest_asyncio

from exchange.commands import Role
from gateway import sessions
from gateway.admin_cli import create_account
from gateway.client import IpxClient
from gateway.server import run_server

SYMBOL = "RS-US10987654B2"
PATENT = "US10987654B2"


@dataclass
class Venue:
    data_dir: str
    tokens: dict[str, str] = field(default_factory=dict)
    url: str = ""


async def list_pre_open(venue: Venue) -> None:
    op = await IpxClient.connect(venue.url, venue.tokens["op"])
    try:
        await op.request(
            "op.list_asset",
            {
                "patent_id": PATENT,
                "title": "Adaptive beamforming for low-power radios",
                "jurisdiction": "US",
                "owner_account": "issuer",
                "filing_date": "2015-03-01",
                "expiry_date": "2035-03-01",
                "cpc_class": "H04B 7/06",
                "licensees": ["Acme Radio", "Globex"],
                "royalty_terms": "2% of net sales",
                "currency": "USD",
                "trailing_royalties": "1200000.00",
            },
        )
        await op.request(
            "op.issue_shares",
            {
                "patent_id": PATENT,
                "symbol": SYMBOL,
                "issuer_account": "issuer",
                "total_units": 100_000,
                "currency": "USD",
                "tick_size": "0.10",
                "reference_price": "70.00",
                "maker_fee_bps": 10,
                "taker_fee_bps": 25,
                "opening_auction_ns": 1_000_000,
            },
        )
    finally:
        await op.close()


@pytest.fixture
def venue(tmp_path: object) -> Venue:
    data_dir = os.fspath(tmp_path)  # type: ignore[call-overload]
    venue = Venue(data_dir)
    for account, role in (("op", Role.OPERATOR), ("issuer", Role.ISSUER)):
        create_account(data_dir, account, role)
        venue.tokens[account], _ = sessions.issue_token(data_dir, account)
    return venue


@pytest_asyncio.fixture
async def market(venue: Venue) -> AsyncIterator[Venue]:
    async with run_server(venue.data_dir, logon_timeout_s=1.0) as running:
        venue.url = running.url
        await list_pre_open(venue)
        yield venue
