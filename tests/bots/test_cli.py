"""`ipx bots` and `ipx stress` given bad input: one line on stderr, no traceback, and the exit
code bots/cli.py documents.

Rules:
- 2: the input is wrong: no instrument in --instruments (argparse's usage and error), an
  unknown symbol (the exchange refuses the set-up: 404 UNKNOWN_SYMBOL), a token the server
  does not know (401), no --data-dir to issue tokens in.
- 3: no connection to the exchange (nothing listens at --url).
- `ipx demo`, like `ipx serve`: 2 with one line when its exchange cannot start (the port is
  taken, or another server holds the data dir).
"""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import pytest

from bots.run_config import EXIT_REFUSED, EXIT_UNREACHABLE
from gateway import cli, sessions
from tests.bots.conftest import Venue

pytestmark = pytest.mark.asyncio

NOTHING_LISTENS = "ws://127.0.0.1:1/"
DEMO_EXIT_S = 60.0  # Generous: a loaded CI machine imports slowly.


async def ipx(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, str]:
    # In a thread: the command runs its own event loop, the server goes on on this one.
    code = await asyncio.to_thread(cli.main, list(arguments))
    return code, capsys.readouterr().err


def bots_run(venue: Venue, *options: str) -> list[str]:
    return ["bots", "--url", venue.url, "--data-dir", venue.data_dir, "--duration", "1s", *options]


@pytest.mark.parametrize(
    ("token", "instruments", "error"),
    [
        ("op", "RS-NOPE", "ipx bots: the exchange refused: 404 UNKNOWN_SYMBOL: no instrument"),
        ("wrong", "RS-US10987654B2", "refused the connection: HTTP 401"),
    ],
)
async def test_bots_refused_exit_2_with_one_line(
    market: Venue, capsys: pytest.CaptureFixture[str], token: str, instruments: str, error: str
) -> None:
    token = market.tokens.get(token, token)
    code, err = await ipx(capsys, *bots_run(market, "--token", token, "--instruments", instruments))
    assert code == EXIT_REFUSED
    assert err.count("\n") == 1 and error in err, err


async def test_bots_without_an_instrument_is_a_usage_error(
    market: Venue, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        await ipx(capsys, *bots_run(market, "--instruments", ","))
    assert exit_.value.code == EXIT_REFUSED
    assert "argument --instruments: ',' names no instrument" in capsys.readouterr().err


async def test_stress_without_a_data_dir_exits_2(
    market: Venue, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = ["stress", "--url", market.url, "--token", market.tokens["op"], "--rate", "10"]
    code, err = await ipx(capsys, *arguments)
    assert code == EXIT_REFUSED
    assert err == "ipx stress: --data-dir is needed: its tokens are issued on the server's host\n"


async def test_stress_with_nothing_at_the_url_exits_3(
    venue: Venue, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = ["stress", "--url", NOTHING_LISTENS, "--data-dir", venue.data_dir, "--rate", "10"]
    code, err = await ipx(capsys, *arguments, "--token", venue.tokens["op"])
    assert code == EXIT_UNREACHABLE
    assert (
        err.startswith(f"ipx stress: cannot connect to {NOTHING_LISTENS}: ")
        and err.count("\n") == 1
    ), err


@pytest.mark.parametrize("mistake", ["data dir", "operator"])
async def test_no_operator_token_is_issued_on_a_mistyped_dir_or_account(
    market: Venue, capsys: pytest.CaptureFixture[str], tmp_path: Path, mistake: str
) -> None:
    # As `ipx tokens issue`: a mistyped dir must get no tokens.json, a mistyped operator no
    # token that would log on whoever is later opened under that id.
    data_dir = str(tmp_path / "typo") if mistake == "data dir" else market.data_dir
    operator = "opertaor" if mistake == "operator" else "op"
    arguments = ["stress", "--url", market.url, "--data-dir", data_dir, "--rate", "10"]
    code, err = await ipx(capsys, *arguments, "--operator", operator)
    assert code == EXIT_REFUSED
    assert "cannot issue the operator's token" in err and err.count("\n") == 1, err
    assert not (tmp_path / "typo").exists()
    tokens = sessions.load_tokens(sessions.tokens_path(market.data_dir))
    assert "opertaor" not in {entry.account for entry in tokens}


async def ipx_process(*arguments: str) -> tuple[int, str]:
    # `ipx demo` installs signal handlers: it runs in a process of its own, as a user runs it.
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", *arguments,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), DEMO_EXIT_S)
    assert process.returncode is not None
    return process.returncode, err.decode()


async def test_demo_on_a_taken_port_exits_2_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        code, err = await ipx_process("demo", "--data-dir", str(tmp_path / "demo"), "--port", port)
    assert code == EXIT_REFUSED
    assert err.startswith("ipx demo: ") and "address already in use" in err, err
    assert err.count("\n") == 1, err


async def test_demo_on_a_data_dir_another_server_holds_exits_2_with_one_line(
    market: Venue,
) -> None:
    code, err = await ipx_process("demo", "--data-dir", market.data_dir, "--port", "0")
    assert code == EXIT_REFUSED
    assert err.startswith("ipx demo: ") and err.count("\n") == 1, err
