"""What every run of `ipx bots` or `ipx stress` is given: where, how long, as whom, checks."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.serve_cli import OPERATOR_ACCOUNT


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
