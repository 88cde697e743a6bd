"""`ipx bots`, `ipx stress` and `ipx demo`: their arguments (the work: bots/simulation.py,
bots/stress.py, bots/demo.py).

    ipx bots --url ws://127.0.0.1:8700/ --data-dir DIR [--token OPERATOR_TOKEN]
             --instruments RS-US10123456B2,... --duration 60s --seed 1 [--plot DIR]
    ipx stress --url ws://127.0.0.1:8700/ --data-dir DIR [--token OPERATOR_TOKEN]
               --rate 2000 --duration 10s --connections 8 [--seed 1] [--plot DIR]

--data-dir is the running server's data dir: bot tokens can only be issued there (see
bots/market.py). Without --token, a token is issued there for --operator (default "operator",
the account `ipx serve` opens on a new data dir).
Exit codes of `ipx bots` and `ipx stress` (bots/run_config.py):
  0  done, and consistent;
  1  done, but the consistency check or `ipx ledger verify` failed, or an agent stopped on
     an error (the report says which);
  2  bad input, with one line on stderr: the arguments (argparse's usage and error), the data
     dir, the token (the server answered 401), or the exchange refused the set-up (e.g.
     404 UNKNOWN_SYMBOL for a symbol of --instruments);
  3  no connection to the exchange (refused, no such host), or it stopped answering before
     the run could start or be checked: one line on stderr, no report;
  130  interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from bots import agents, demo, simulation, stress
from gateway.serve_cli import DEFAULT_HOST, DEFAULT_PORT, OPERATOR_ACCOUNT

_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m)?$")


def duration_s(text: str) -> float:
    """Parse "60s", "1.5s", "500ms", "2m" or a plain number of seconds."""
    match = _DURATION.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 60s, 500ms or 2m")
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[match.group(2)]
    return float(match.group(1)) * scale


def symbols(text: str) -> list[str]:
    """Parse "RS-A,RS-B": at least one symbol; each one once, in the order given."""
    parsed = list(dict.fromkeys(filter(None, (item.strip() for item in text.split(",")))))
    if not parsed:
        raise argparse.ArgumentTypeError(f"{text!r} names no instrument: use SYMBOL[,SYMBOL...]")
    return parsed


def population(text: str) -> dict[str, int]:
    """Parse "market_maker=1,noise=4,..." (kinds not named keep their default count)."""
    counts = dict(agents.DEFAULT_POPULATION)
    for item in filter(None, text.split(",")):
        kind, _, count = item.partition("=")
        if kind not in agents.KINDS or not count.isdigit():
            raise argparse.ArgumentTypeError(
                f"{item!r}: use KIND=N, KIND in {sorted(agents.KINDS)}"
            )
        counts[kind] = int(count)
    return counts


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", required=True, help="the gateway, e.g. ws://127.0.0.1:8700/")
    parser.add_argument("--data-dir", help="the server's data dir (bot tokens are issued there)")
    parser.add_argument("--token", help="an operator token (else one is issued for --operator)")
    parser.add_argument(
        "--operator", default=OPERATOR_ACCOUNT, help=f"operator account ({OPERATOR_ACCOUNT})"
    )
    parser.add_argument("--duration", type=duration_s, default=60.0, help="e.g. 60s")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--plot", metavar="DIR", help="write PNG charts to DIR")
    parser.add_argument(
        "--no-ledger-verify", action="store_true", help="skip `ipx ledger verify` at the end"
    )


def _common_config(arguments: argparse.Namespace) -> dict[str, Any]:
    """The configuration fields of the options every command has (see _common)."""
    return {
        "url": arguments.url,
        "duration_s": arguments.duration,
        "seed": arguments.seed,
        "data_dir": arguments.data_dir,
        "token": arguments.token,
        "operator": arguments.operator,
        "plot_dir": arguments.plot,
        "verify_ledger": not arguments.no_ledger_verify,
    }


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `bots` and `stress` to `ipx`."""
    bots = subparsers.add_parser("bots", help="run simulated traders against a live exchange")
    _common(bots)
    bots.add_argument("--instruments", type=symbols, required=True, help="symbols, comma-separated")
    bots.add_argument(
        "--agents", type=population, default=dict(agents.DEFAULT_POPULATION),
        help="agents per kind, e.g. market_maker=2,noise=8",
    )  # fmt: skip
    bots.add_argument(
        "--offering", type=duration_s, default=2.0, help="offering length for pre-open symbols"
    )
    bots.set_defaults(handler=run_bots)
    load = subparsers.add_parser("stress", help="drive a constant order rate; report latency")
    _common(load)
    load.add_argument("--rate", type=int, required=True, help="orders per second offered")
    load.add_argument("--connections", type=int, default=4)
    load.set_defaults(handler=run_stress)
    demo_parser = subparsers.add_parser(
        "demo", help="a live market out of the box: the exchange, sample patents, bots"
    )
    demo_parser.add_argument("--data-dir", help="default: a new temporary directory")
    demo_parser.add_argument("--host", default=DEFAULT_HOST)
    demo_parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free one")
    demo_parser.add_argument(
        "--duration", type=duration_s, default=0.0, help="e.g. 60s (default: until Ctrl-C)"
    )
    demo_parser.add_argument("--seed", type=int, default=1)
    demo_parser.add_argument("--plot", metavar="DIR", help="at the end, PNG charts in DIR")
    demo_parser.set_defaults(handler=run_demo)


def run_bots(arguments: argparse.Namespace) -> int:
    print(f"ipx bots: seed {arguments.seed}", flush=True)
    config = simulation.BotsConfig(
        symbols=arguments.instruments,
        population=arguments.agents,
        offering_s=arguments.offering,
        **_common_config(arguments),
    )
    return simulation.main(config)


def run_demo(arguments: argparse.Namespace) -> int:
    config = demo.DemoConfig(
        arguments.data_dir,
        arguments.host,
        arguments.port,
        arguments.duration,
        arguments.seed,
        arguments.plot,
    )
    return demo.main(config)


def run_stress(arguments: argparse.Namespace) -> int:
    print(f"ipx stress: seed {arguments.seed}", flush=True)
    config = stress.StressConfig(
        rate_per_s=arguments.rate,
        connections=arguments.connections,
        **_common_config(arguments),
    )
    return stress.main(config)
