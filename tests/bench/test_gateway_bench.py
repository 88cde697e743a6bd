"""The gateway benchmark runs end to end and reports sane figures (never judged on speed).

One short run (about 1 s per phase, 2 connections x 4 in flight) through a real gateway
process and a real echo server process; the figures are read back from its --json file.
"""

from __future__ import annotations

import array
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import gateway_bench as gb

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    figures = tmp_path_factory.mktemp("gateway-bench") / "figures.json"
    command = [
        sys.executable, "bench/gateway_bench.py", "--quick", "--duration", "1", "--warmup",
        "0.3", "--connections", "2", "--in-flight", "4", "--json", str(figures),
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout, json.loads(figures.read_text())


def _assert_sane_latency(figures: dict[str, float]) -> None:
    assert figures["n"] > 0
    assert 0 < figures["p50"] <= figures["p99"] <= figures["p99.9"]
    # The histogram keeps 3 significant digits: its p99.9 may round just above the raw max.
    assert figures["p99.9"] <= figures["max"] * 1.001 + 1e-6


def test_the_closed_loop_acknowledges_orders_without_errors(
    run: tuple[str, dict[str, Any]],
) -> None:
    _, results = run
    closed = results["closed"]
    assert closed["errors"] == {}
    assert closed["orders_per_s"] > 0
    # Every acknowledged place is cancelled: answers are about twice the orders.
    assert closed["answers_per_s"] >= 1.5 * closed["orders_per_s"]
    _assert_sane_latency(closed["place_ms"])
    _assert_sane_latency(closed["cancel_ms"])
    assert results["server_exit_status"] == 0


def test_the_open_loop_runs_at_half_the_closed_loop_rate(run: tuple[str, dict[str, Any]]) -> None:
    _, results = run
    open_ = results["open"]
    assert open_["errors"] == {}
    assert not open_["overloaded"]
    assert open_["target_orders_per_s"] == pytest.approx(results["closed"]["orders_per_s"] / 2)
    sent_per_s = open_["send_late_ms"]["n"] / open_["seconds"]
    # The sender catches up after a stall, so the schedule holds over the window.
    assert sent_per_s == pytest.approx(open_["target_orders_per_s"], rel=0.2)
    _assert_sane_latency(open_["place_ms"])


def test_the_echo_ceiling_is_measured_with_the_same_frames(
    run: tuple[str, dict[str, Any]],
) -> None:
    _, results = run
    echo = results["echo"]
    assert echo["errors"] == {}
    assert echo["orders_per_s"] > 0
    _assert_sane_latency(echo["place_ms"])


def test_the_output_names_the_command_and_judges_every_target(
    run: tuple[str, dict[str, Any]],
) -> None:
    stdout, _ = run
    assert stdout.startswith("command: python bench/gateway_bench.py --quick --duration 1")
    assert "load average" in stdout
    verdicts = [line for line in stdout.splitlines() if line.startswith("target ")]
    assert len(verdicts) == 3
    assert all(line.endswith((" PASS", " MISS")) for line in verdicts)


def test_percentiles_come_out_in_milliseconds() -> None:
    samples = array.array("q", range(1_000_000, 101_000_000, 1_000_000))  # 1..100 ms.
    figures = gb.percentiles(samples)
    assert figures["n"] == 100
    # Without hdrhistogram (not in the test extra) they come from the sorted samples.
    assert figures["p50"] == pytest.approx(50, rel=0.03)
    assert figures["p99"] == pytest.approx(99, rel=0.03)
    assert figures["max"] == 100


def test_only_answers_inside_the_window_count() -> None:
    tally = gb.Tally(window_start_ns=1_000, window_end_ns=2_000, orders_max=2)
    ok = gb._Answer("1", 200, gb._Result(7))
    tally.record(gb.PLACE, ok, 0, 999)  # Warm-up: not counted.
    tally.record(gb.PLACE, ok, 1_000, 1_500)
    tally.record(gb.CANCEL, gb._Answer("2", 404, error=gb._Error("UNKNOWN_ORDER")), 0, 1_600)
    tally.record(gb.PLACE, ok, 1_600, 1_700)  # The second order ends the window.
    tally.record(gb.PLACE, ok, 1_700, 1_800)
    assert tally.places == 2
    assert tally.window_end_ns == 1_701
    assert list(tally.place_ns) == [500, 100]
    assert tally.errors == {"cancel 404 UNKNOWN_ORDER": 1}


def test_with_tls_both_servers_are_measured_over_wss(tmp_path: Path) -> None:
    figures = tmp_path / "figures.json"
    command = [
        sys.executable, "bench/gateway_bench.py", "--quick", "--duration", "0.5", "--warmup",
        "0.2", "--connections", "2", "--in-flight", "4", "--open-rate", "50", "--tls",
        "--json", str(figures),
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "transport: TLS (" in done.stdout
    results = json.loads(figures.read_text())
    for phase in ("closed", "open", "echo"):
        assert results[phase]["errors"] == {}, phase
        assert results[phase]["orders_per_s"] > 0, phase
