"""The event loop an IPX process runs on, and running a coroutine on it.

uvloop (libuv behind asyncio's API) is the default wherever it is installed: it is what the
gateway is benchmarked and tested on. Its transports, futures, callbacks and timers are C, so
the per-request machinery around the exchange (socket reads and writes, callbacks, the
sequencer's wake-ups) costs less: measured against asyncio's own loop in interleaved runs
(BENCHMARKS.md, "Gateway"), 1.11 x the acknowledged orders/s (median of 10 pairs) and 7%
less server CPU per answer.

asyncio's loop stays selectable (`--event-loop asyncio`) and is used where uvloop cannot be
installed (it has no Windows build); everything works on both, only slower on asyncio.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

UVLOOP = "uvloop"
ASYNCIO = "asyncio"
EVENT_LOOPS = (UVLOOP, ASYNCIO)


def uvloop_available() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def default_event_loop() -> str:
    """uvloop where it is installed, else asyncio's own loop."""
    return UVLOOP if uvloop_available() else ASYNCIO


def running_event_loop() -> str:
    """The name of the loop this coroutine runs on."""
    module = type(asyncio.get_running_loop()).__module__
    return UVLOOP if module.partition(".")[0] == UVLOOP else ASYNCIO


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """Return what makes a new loop of this name.

    Raises:
        ValueError: an unknown name, or uvloop asked for where it is not installed.
    """
    if name == ASYNCIO:
        return asyncio.new_event_loop
    if name == UVLOOP:
        if not uvloop_available():
            raise ValueError("the uvloop event loop is not installed (pip install uvloop)")
        import uvloop

        return uvloop.new_event_loop
    raise ValueError(f"unknown event loop {name!r}: choose one of {', '.join(EVENT_LOOPS)}")


def add_argument(parser: argparse.ArgumentParser, flag: str, help: str) -> None:
    """Add a choice of event loop to a command line, defaulting to default_event_loop()."""
    parser.add_argument(flag, choices=EVENT_LOOPS, default=default_event_loop(), help=help)


def run(coroutine: Coroutine[Any, Any, T], event_loop: str | None = None) -> T:
    """Run a coroutine to completion on a new loop (default_event_loop() if None), as asyncio.run.

    Raises:
        ValueError: as loop_factory (the coroutine is closed, never started).
    """
    try:
        factory = loop_factory(event_loop or default_event_loop())
    except ValueError:
        coroutine.close()
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coroutine)
