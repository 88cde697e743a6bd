"""What every run of `ipx bots` or `ipx stress` is given: where, how long, as whom, checks;
and how a run ends when it cannot start or cannot be checked: one line on stderr, no
traceback, and an exit code that says which (the codes are documented in bots/cli.py).

Invariants:
- A run that reaches its report exits EXIT_OK or EXIT_FAILED; EXIT_REFUSED and
  EXIT_UNREACHABLE mean there is no (complete) report, and the line on stderr says why.
"""

from __future__ import annotations

import sys
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from websockets.exceptions import InvalidStatus, InvalidURI, WebSocketException

from gateway import event_loop
from gateway.client import ClientError, RequestFailed
from gateway.serve_cli import OPERATOR_ACCOUNT

EXIT_OK = 0
EXIT_FAILED = 1  # The run's own checks failed (consistency, ledger verify, a stopped agent).
EXIT_REFUSED = 2  # Bad input: arguments, data dir, token, or the exchange refused the set-up.
EXIT_UNREACHABLE = 3  # No connection to the exchange, or no answer from it in time.
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT.


class SetUpError(Exception):
    """The run cannot start as configured; the message says why in full words."""


class Unreachable(Exception):
    """No connection could be made to the exchange (bots/market.py: connect)."""


@dataclass(kw_only=True)
class RunConfig:
    url: str  # The gateway, e.g. ws://127.0.0.1:8700/.
    duration_s: float
    seed: int
    data_dir: str | None = None  # The server's data dir: bot tokens are issued there.
    token: str | None = None  # An operator token; else one is issued for `operator`.
    operator: str = OPERATOR_ACCOUNT  # The account `ipx serve` opens on a new data dir.
    plot_dir: str | None = None
    verify_ledger: bool = True  # Run `ipx ledger verify` on data_dir at the end.


def run_command(command: str, url: str, run: Coroutine[Any, Any, int]) -> int:
    """Run `ipx {command}`'s coroutine on a new loop; return its exit code.

    What keeps it from starting or from being checked becomes one line on stderr and
    EXIT_REFUSED or EXIT_UNREACHABLE; any other exception is a bug and propagates (with its
    traceback).
    """
    try:
        return event_loop.run(run)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SetUpError as error:
        return _ended(command, str(error), EXIT_REFUSED)
    except RequestFailed as error:
        return _ended(command, f"the exchange refused: {error}", EXIT_REFUSED)
    except InvalidStatus as error:
        status = error.response.status_code
        reason = f"{url} refused the connection: HTTP {status}"
        if status in (401, 403):
            reason += " (is the token right, and --data-dir the server's own?)"
        return _ended(command, reason, EXIT_REFUSED if status < 500 else EXIT_UNREACHABLE)
    except InvalidURI as error:
        return _ended(command, f"not a WebSocket URL: {error}", EXIT_REFUSED)
    except Unreachable as error:
        return _ended(command, str(error), EXIT_UNREACHABLE)
    except (ClientError, WebSocketException) as error:
        # No answer in time, or the connection lost or closed, before the report.
        return _ended(command, f"the exchange stopped answering: {error}", EXIT_UNREACHABLE)


def _ended(command: str, reason: str, code: int) -> int:
    print(f"ipx {command}: {reason}", file=sys.stderr, flush=True)
    return code
