"""A real server on its own event loop in another thread, so that a test can stall it.

`stall(seconds)` blocks the server's loop (it reads, sequences and answers nothing) while the
test's clients, on the test's loop, go on: their timeouts run, their requests wait. This is
a server that stops answering for a while (a long GC pause, a full disk, SIGSTOP), bounded in
time, without a subprocess.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from gateway.server import RunningServer, run_server

START_S = 10.0


class ServerThread:
    """The running server (`running`, `url`) and its loop, served in a daemon thread."""

    def __init__(self, data_dir: str, options: dict[str, Any]) -> None:
        self._data_dir, self._options = data_dir, options
        self._started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.running: RunningServer | None = None
        self.url = ""
        self._thread = threading.Thread(target=self._serve, name="server", daemon=True)

    def _serve(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as error:  # Told to the test by start().
            self._error = error
            self._started.set()

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with run_server(self._data_dir, logon_timeout_s=1.0, **self._options) as running:
            self.running, self.url = running, running.url
            self._started.set()
            await self._stop.wait()

    async def start(self) -> None:
        self._thread.start()
        await asyncio.to_thread(self._started.wait, START_S)
        if self._error is not None or not self.url:
            raise AssertionError(f"the server did not start: {self._error!r}")

    async def stall(self, seconds: float) -> None:
        """Block the server's loop for seconds, from about now; return once it is blocked."""
        blocked = threading.Event()

        def block() -> None:
            blocked.set()
            time.sleep(seconds)

        assert self._loop is not None
        self._loop.call_soon_threadsafe(block)
        await asyncio.to_thread(blocked.wait, START_S)

    async def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        await asyncio.to_thread(self._thread.join, START_S)


@asynccontextmanager
async def server_thread(data_dir: str, **options: Any) -> AsyncIterator[ServerThread]:
    """Serve data_dir in another thread (run_server's options) until the block exits."""
    server = ServerThread(data_dir, options)
    try:
        await server.start()
        yield server
    finally:
        await server.stop()
