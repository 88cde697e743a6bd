"""The exchange core's cost in CPU instructions per command, this checkout against a base.

    python bench/core_instructions.py --base 4becbb4
    python bench/core_instructions.py --base HEAD~1 --measured 20000

Wall-clock timings on these 2-core machines move 20-40% within an hour and with whatever else
runs; an instruction count does not: valgrind's callgrind counts every instruction the process
executes, the same for the same code and inputs whatever the machine is doing. So a change to
the core can be measured to a fraction of a percent, while other work runs.

Each checkout (the base in a temporary git worktree, and this one, uncommitted changes
included) runs the reference stream of bench/reference_stream.py through `Exchange.handle`
twice under callgrind: once up to the measured commands (setup, offering, warm-up) and once
through them; the difference over the number of measured commands is the core's instructions
per command. The garbage collector is off in both, so its passes (which depend on the heap's
history, not on the code measured) do not count. Callgrind runs programs ~50 times slower:
the default 30,000 measured commands take about two minutes per checkout, all four runs in
parallel.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # Run as a script from anywhere.

# Only what older checkouts' bench/machine.py has too: this file runs inside the base's tree.
from bench.machine import ROOT, progress

WARMUP_COMMANDS = 10_000
MEASURED_COMMANDS = 30_000
COLLECTED = re.compile(r"Collected : ([\d,]+)")


def run_stream(warmup_commands: int, measured_commands: int, through: bool) -> int:
    """In a child under callgrind: set up, warm up, and (through) handle the measured
    commands; return how many exchange commands the measured stream is."""
    import bench.exchange_bench as eb  # This checkout's, by PYTHONPATH.
    import bench.reference_stream as rs

    gc.disable()
    spec = rs.StreamSpec(
        warmup_commands=warmup_commands,
        measured_commands=measured_commands,
        initial_resting_orders=min(rs.StreamSpec.initial_resting_orders, warmup_commands),
    )
    stream = rs.generate(spec)
    # Limit and market orders (kinds 0 and 1) share a layout: the owner is the third field.
    commands = (*stream.warmup, *stream.measured)
    owners = sorted({cast(rs.Limit, c)[2] for c in commands if c[0] in (0, 1)})
    setup = eb.setup_commands(owners, spec.start_price_ticks)
    warmup = eb.to_commands(stream.warmup)
    measured = eb.to_commands([*stream.warmup, *stream.measured])[len(warmup) :]
    exchange, ts_ns, _ = eb.prepared_exchange(setup, warmup)
    if through:
        eb.run_core(exchange, measured, ts_ns)
    return len(measured)


def instructions(tree: Path, sizes: tuple[int, int], through: bool) -> tuple[int, int]:
    """(instructions executed, exchange commands measured) of one callgrind run in tree."""
    warmup, measured = sizes
    script = (
        "from bench.core_instructions import run_stream; "
        f"print(run_stream({warmup}, {measured}, {through}))"
    )
    with tempfile.TemporaryDirectory(prefix="ipx-callgrind-") as scratch:
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={scratch}/out",
             sys.executable, "-c", script],
            cwd=tree, env=dict(os.environ, PYTHONPATH=str(tree), PYTHONHASHSEED="0"),
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    found = COLLECTED.search(done.stderr)
    assert found is not None, f"no callgrind total in: {done.stderr[-500:]}"
    return int(found.group(1).replace(",", "")), int(done.stdout.split()[-1])


def per_command(tree: Path, sizes: tuple[int, int]) -> float:
    """The core's instructions per measured exchange command in tree."""
    with ThreadPoolExecutor(2) as pool:
        up_to, through = pool.map(lambda full: instructions(tree, sizes, full), (False, True))
    return (through[0] - up_to[0]) / through[1]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--base", required=True, help="the git revision to compare against")
    parser.add_argument("--warmup", type=int, default=WARMUP_COMMANDS)
    parser.add_argument("--measured", type=int, default=MEASURED_COMMANDS)
    arguments = parser.parse_args(argv)
    print(f"command: python bench/core_instructions.py {' '.join(sys.argv[1:])}")
    print(f"A = {arguments.base} (a worktree), B = this checkout; valgrind callgrind, GC off")
    sys.stdout.flush()
    from bench.machine import base_worktree  # This checkout's (see the imports above).

    with base_worktree(arguments.base) as base:
        # The base may predate this script: it runs with this checkout's copy.
        (base / "bench" / "core_instructions.py").write_text(Path(__file__).read_text())
        progress(f"both checkouts under callgrind ({arguments.measured:,} measured commands)")
        sizes = (arguments.warmup, arguments.measured)
        with ThreadPoolExecutor(2) as pool:
            a, b = pool.map(lambda tree: per_command(tree, sizes), (base, ROOT))
    print(f"A {a:,.0f} instructions per command")
    print(f"B {b:,.0f} instructions per command")
    print(f"B/A {b / a:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
