"""The event loop every asyncio test runs on.

`ipx serve` runs on uvloop where it is installed (gateway/event_loop.py), so the tests do
too: what they check is what runs. A test module that marks itself with
`pytest.mark.asyncio(loop_factories=list(event_loop.EVENT_LOOPS))` runs once on each loop:
the fallback to asyncio's own loop stays tested where it matters (sessions, orders, limits).
A loop that is not installed makes its runs skip with the plugin's reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest

from gateway import event_loop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    marker = item.get_closest_marker("asyncio")
    wanted = marker.kwargs.get("loop_factories") if marker is not None else None
    names = wanted or [event_loop.default_event_loop()]
    available = [
        name for name in names if name != event_loop.UVLOOP or event_loop.uvloop_available()
    ]
    return {name: event_loop.loop_factory(name) for name in available or [event_loop.ASYNCIO]}
