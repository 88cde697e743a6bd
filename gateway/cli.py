"""The `ipx` command: one entry point whose subcommands live in small modules beside it.

Each subcommand module exposes `register(subparsers)`, adding its parsers and setting
`handler` (a function taking the parsed arguments and returning an exit code).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from bots import cli as bots_cli
from gateway import admin_cli, client_cli, ledger_cli, receipts_cli, serve_cli, tail_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ipx", description="IPX patent-royalty exchange")
    commands = parser.add_subparsers(dest="command", required=True)
    ledger = commands.add_parser("ledger", help="verify the journal and prove records in it")
    ledger_commands = ledger.add_subparsers(dest="ledger_command", required=True)
    ledger_cli.register(ledger_commands)
    receipts_cli.register(ledger_commands)
    serve_cli.register(commands)
    admin_cli.register(commands)
    client_cli.register(commands)
    tail_cli.register(commands)
    bots_cli.register(commands)  # `ipx bots` and `ipx stress`.
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    try:
        code: int = arguments.handler(arguments)
    except BrokenPipeError:
        # The reader went away (`ipx ledger verify DIR | head`): nothing more to say. Point
        # stdout at /dev/null so the interpreter's flush at exit does not raise again (the
        # recipe of Python's signal module documentation).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
