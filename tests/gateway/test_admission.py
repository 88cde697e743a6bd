"""Rule: connections that have not logged on cannot crowd out everyone else.

A connection holds a descriptor from its accept, through its handshake and its logon timeout.
The server caps them before reading anything (gateway/admission.py): all connections at once,
and those of one address that have not logged on yet. One beyond a cap is reset at its accept.
"""

from __future__ import annotations

import asyncio

import pytest

from gateway.admission import Admission
from gateway.server import run_server
from tests.gateway.conftest import SYMBOL, Venue, list_the_market, scrape_metrics

WAIT_S = 5.0


def test_a_connection_beyond_either_cap_is_refused_and_counted() -> None:
    admission = Admission(connections_max=4, pending_per_address_max=2)
    assert admission.admit("10.0.0.1") and admission.admit("10.0.0.1")
    assert not admission.admit("10.0.0.1")  # Its address has two not logged on.
    admission.logged_on("10.0.0.1")
    assert admission.admit("10.0.0.1")  # One of them logged on: room again.
    assert admission.admit("10.0.0.2")
    assert not admission.admit("10.0.0.3")  # Four open: the total cap.
    admission.closed("10.0.0.2", logged_on=False)
    admission.closed("10.0.0.1", logged_on=True)
    assert (admission.open, admission.pending, admission.refused) == (2, {"10.0.0.1": 2}, 2)


async def _reset_at_once(port: int) -> bool:
    # A connection the server aborts at its accept reads end-of-stream or a reset at once.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        return await asyncio.wait_for(reader.read(1), WAIT_S) == b""
    except ConnectionResetError:
        return True
    finally:
        writer.close()


@pytest.mark.asyncio
async def test_silent_connections_of_one_address_are_capped_and_logged_on_ones_are_not(
    venue: Venue,
) -> None:
    admission = Admission(connections_max=100, pending_per_address_max=5)
    async with run_server(venue.data_dir, admission=admission) as running:
        venue.url = running.url
        await list_the_market(venue)
        clients = [await venue.client("alice") for _ in range(3)]  # Logged on: not pending.
        silent = [await asyncio.open_connection("127.0.0.1", running.port) for _ in range(5)]
        try:
            await asyncio.sleep(0.1)  # Accepted by the server.
            assert await _reset_at_once(running.port)  # A sixth that says nothing: reset.
            for client in clients:  # Those logged on are served as before.
                assert (await client.request("book.snapshot", {"symbol": SYMBOL}))["bids"] == []
        finally:
            for _, writer in silent:
                writer.close()
        await asyncio.sleep(0.1)  # Their closes reach the server.
        later = await venue.client("bob")  # Room again.
        await later.close()
        metrics = await asyncio.to_thread(scrape_metrics, f"{running.http_url}metrics")
        assert metrics[("ipx_connections_refused_total", ())] == 1
        for client in clients:
            await client.close()
