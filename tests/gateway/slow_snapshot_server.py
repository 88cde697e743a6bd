"""A gateway whose forked snapshot writer is slow: for the SIGKILL test in test_sequencer.py.

    python -m tests.gateway.slow_snapshot_server DATA_DIR SECONDS

Serves DATA_DIR on a free port with a snapshot every 20 records, the writer sleeping SECONDS
before it writes (as a large state written at idle priority on busy cores would take), makes
25 records, then prints "writer PID PORT" and serves until killed.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from exchange.commands import OpenAccount, Role
from exchange.core import ADMIN_ACTOR
from gateway import sequencer as sequencer_module
from gateway.server import run_server


async def main(data_dir: str, writer_sleep_s: float) -> None:
    parent = os.getpid()
    store = sequencer_module.Sequencer._store_snapshot

    def slow_store(self: sequencer_module.Sequencer, seq: int) -> None:
        if os.getpid() != parent:
            time.sleep(writer_sleep_s)
        store(self, seq)

    sequencer_module.Sequencer._store_snapshot = slow_store  # type: ignore[method-assign]
    async with run_server(data_dir, port=0) as running:
        sequencer = running.gateway.sequencer
        sequencer._snapshot_every = 20
        for index in range(25):
            await sequencer.submit(OpenAccount(ADMIN_ACTOR, f"acct-{index}", Role.INVESTOR))
        child = sequencer._snapshot_child
        assert child is not None, "no snapshot writer was started"
        print(f"writer {child[0]} {running.port}", flush=True)
        await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
