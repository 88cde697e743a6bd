"""`ipx bots` against a real server, end to end.

Rules:
- Bots set the market up over the API (accounts, cash, an offering of the pre-open patent),
  then trade: the offering sells units to bots and trades follow in continuous trading.
- At the end each bot's view (from its execution reports) equals the exchange's balances,
  open orders and fills, and `ipx ledger verify` passes on the data dir.
"""

from __future__ import annotations

import pathlib

import pytest

from bots.simulation import BotsConfig, run_bots
from bots.stress import StressConfig, run_stress
from gateway.client import IpxClient
from tests.bots.conftest import SYMBOL, Venue

SEED = 7


@pytest.mark.asyncio
async def test_bots_trade_and_agree_with_the_exchange(
    market: Venue, capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    print(f"seed {SEED}")
    config = BotsConfig(
        url=market.url,
        symbols=[SYMBOL],
        duration_s=6.0,
        seed=SEED,
        data_dir=market.data_dir,
        token=market.tokens["op"],
        offering_s=1.0,
        plot_dir=str(tmp_path),
    )
    code = await run_bots(config)
    output = capsys.readouterr().out
    print(output)
    assert code == 0
    assert "consistency (9 accounts): passed" in output
    assert "ipx ledger verify: passed" in output
    assert "market data: running" in output
    op = await IpxClient.connect(market.url, market.tokens["op"])
    try:
        info = await op.request("instrument.info", {"symbol": SYMBOL})
    finally:
        await op.close()
    assert info["phase"] == "continuous"
    assert info["trade_count"] > 0
    for chart in (f"price_{SYMBOL}.png", f"depth_{SYMBOL}.png"):  # --plot DIR: PNG charts.
        assert (tmp_path / chart).read_bytes().startswith(b"\x89PNG"), chart


@pytest.mark.asyncio
async def test_stress_acks_orders_and_ends_consistent(
    market: Venue, capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    print(f"seed {SEED}")
    config = StressConfig(
        url=market.url,
        rate_per_s=300,
        duration_s=3.0,
        connections=2,
        seed=SEED,
        data_dir=market.data_dir,
        token=market.tokens["op"],
        plot_dir=str(tmp_path),
    )
    code = await run_stress(config)
    output = capsys.readouterr().out
    print(output)
    assert code == 0
    acked = int(output.split("\nacked")[1].split()[0])
    assert 0 < acked <= 900
    assert "consistency      passed" in output
    assert "ledger verify    passed" in output
    assert "market data      running" in output
    assert "p99.9" in output
    assert (tmp_path / "latency.png").read_bytes().startswith(b"\x89PNG")
