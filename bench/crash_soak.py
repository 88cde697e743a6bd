"""Crash soak: run the demo market, kill it at random moments, and check every restart.

    python bench/crash_soak.py --duration 600
    python bench/crash_soak.py --duration 60 --data-dir /tmp/soak --seed 7

Each round starts `ipx demo` on the same data dir (the exchange, its bots trading, a royalty
every 45 s; market makers quote with cancel-on-disconnect), lets it run for a random time (1 to
70 s, up to --life-max), and stops it: SIGKILL four times in five, else SIGTERM (a clean
shutdown). After each stop it checks, and stops at the first failure (exit status 1):

- `ipx ledger verify` passes on the journal left behind;
- `gateway.sequencer.recover` rebuilds the exchange (snapshot + tail, as a server start), and
  a full replay of the journal from genesis gives the same state hash;
- every session with cancel-on-disconnect that the previous check found in the state has been
  ended by the start that followed (its record is in the journal), and none of the orders it
  covered is still open.

It reports the rounds, the stops of each kind, the records journaled and the sessions checked.
What it finds is a bug of recovery; what it cannot find is a bug no round happened to hit:
a clean run says only that these rounds held.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # Run as a script from anywhere.

from bench.machine import ROOT, progress
from bots import demo as demo_module
from exchange.core import Exchange
from gateway.sequencer import recover

LIFE_MAX_S = 70.0
SIGKILL_SHARE = 0.8


@dataclass
class Soak:
    """What the rounds found so far."""

    rounds: int = 0
    kills: int = 0
    terms: int = 0
    records: int = 0
    sessions_checked: int = 0
    # Sessions with cancel-on-disconnect at the last check, and the open orders their end
    # must cancel (the session's, or with scope "account" all the account's).
    pending: dict[str, list[int]] = field(default_factory=dict)


def check_restart(data_dir: str, soak: Soak, *, served: bool = True) -> str | None:
    """Verify the journal and the recovery after a stop; return what failed, or None.

    served: whether the run got as far as serving. A run killed while it was still starting
    (recovering) may not have ended the last run's sessions: the next restart must.
    """
    verify = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "ledger", "verify", data_dir],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if verify.returncode != 0:
        return f"ipx ledger verify failed: {verify.stdout[-600:]}{verify.stderr[-600:]}"
    exchange, journal, _ = recover(data_dir)
    try:
        full = Exchange()
        full.replay(journal.records(1))
    finally:
        journal.close()
    if full.state_hash() != exchange.state_hash():
        return "the recovered state differs from a full replay's"
    state = exchange.state
    for session_id, covered in soak.pending.items() if served else ():
        if session_id in state.sessions:
            return f"session {session_id} was not ended by the restart"
        left = [order_id for order_id in covered if order_id in state.orders]
        if left:
            return f"orders {left} of session {session_id} outlived the restart"
        soak.sessions_checked += 1
    soak.pending = {
        session_id: list(
            state.accounts[session.account].open_orders
            if session.cancel_scope == "account"
            else session.open_orders
        )
        for session_id, session in state.sessions.items()
        if session.cancel_scope
    }
    soak.records = exchange.seq
    return None


def _tail(log_path: str, lines: int = 40) -> str:
    # The round's log goes with the scratch directory: what failed is printed with it.
    with open(log_path, errors="replace") as log:
        return "".join(log.readlines()[-lines:])


def run_round(data_dir: str, rng: random.Random, life_max_s: float, soak: Soak) -> str | None:
    """One start, a random life, a stop; return what failed, or None."""
    log_path = f"{data_dir}.round{soak.rounds + 1}.log"
    with open(log_path, "w") as log:
        demo = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "demo", "--data-dir", data_dir, "--port", "0",
             "--seed", str(rng.randrange(1 << 16))],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        life_s = rng.uniform(1.0, life_max_s)
        deadline = time.monotonic() + life_s
        while time.monotonic() < deadline and demo.poll() is None:
            time.sleep(0.1)
        if demo.poll() is not None:
            return f"the demo exited by itself ({demo.returncode}):\n{_tail(log_path)}"
        kill = rng.random() < SIGKILL_SHARE
        demo.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        code = demo.wait(timeout=120)
    soak.rounds += 1
    if kill:
        soak.kills += 1
    else:
        soak.terms += 1
        if code != 0:
            return f"a SIGTERM ended with exit status {code}:\n{_tail(log_path)}"
    with open(log_path, errors="replace") as log:
        served = demo_module.LIVE in log.read()
    failure = check_restart(data_dir, soak, served=served)
    progress(
        f"round {soak.rounds}: {'SIGKILL' if kill else 'SIGTERM'} after {life_s:.1f} s; "
        f"{'' if served else 'killed while starting; '}"
        f"{soak.records:,} records; {len(soak.pending)} sessions with cancel-on-disconnect "
        f"to be ended next; {'FAILED: ' + failure if failure else 'checks passed'}"
    )
    return failure


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of rounds")
    parser.add_argument("--data-dir", default="", help="default: a new temporary directory")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--life-max", type=float, default=LIFE_MAX_S, help="seconds per round")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    seed = (
        arguments.seed if arguments.seed is not None else random.SystemRandom().randrange(1 << 32)
    )
    print(f"command: python bench/crash_soak.py {' '.join(argv or sys.argv[1:])}")
    print(f"seed {seed} (replay with --seed {seed})")
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="ipx-soak-") as scratch:
        data_dir = arguments.data_dir or os.path.join(scratch, "data")
        soak = Soak()
        end = time.monotonic() + arguments.duration
        failure = None
        while failure is None and time.monotonic() < end:
            failure = run_round(data_dir, rng, arguments.life_max, soak)
        print(
            f"{soak.rounds} rounds ({soak.kills} SIGKILL, {soak.terms} SIGTERM), "
            f"{soak.records:,} records, {soak.sessions_checked} sessions with "
            f"cancel-on-disconnect checked ended at a restart: "
            f"{'FAILED: ' + failure if failure else 'every check passed'}"
        )
    return 1 if failure else 0


if __name__ == "__main__":
    sys.exit(main())
