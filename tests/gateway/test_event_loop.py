"""Rule: IPX runs on uvloop where it is installed, on asyncio's own loop when asked."""

from __future__ import annotations

import asyncio
import types

import pytest

from gateway import event_loop


async def _loop_name() -> str:
    await asyncio.sleep(0)
    return event_loop.running_event_loop()


@pytest.mark.parametrize("loop_name", event_loop.EVENT_LOOPS)
def test_run_uses_the_loop_asked_for(loop_name: str) -> None:
    if loop_name == event_loop.UVLOOP and not event_loop.uvloop_available():
        pytest.skip("uvloop is not installed")
    assert event_loop.run(_loop_name(), loop_name) == loop_name


def test_the_default_is_uvloop_where_it_is_installed() -> None:
    expected = event_loop.UVLOOP if event_loop.uvloop_available() else event_loop.ASYNCIO
    assert event_loop.run(_loop_name()) == expected


def test_an_unknown_loop_is_refused_and_the_coroutine_never_starts() -> None:
    coroutine = _loop_name()
    assert isinstance(
        coroutine, types.CoroutineType
    )  # Coroutine has no cr_frame; CoroutineType does.
    with pytest.raises(ValueError, match="unknown event loop 'trio'"):
        event_loop.run(coroutine, "trio")
    assert coroutine.cr_frame is None  # Closed, so no "never awaited" warning either.


@pytest.mark.asyncio
async def test_asyncio_tests_run_on_the_loop_ipx_serve_uses() -> None:
    assert event_loop.running_event_loop() == event_loop.default_event_loop()
