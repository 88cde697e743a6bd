"""Fair value of a royalty share, on hand-computed examples.

Rules:
- One unit receives annual royalties / total units at the end of each remaining whole year and
  the pro-rata part of the last partial year at the end of that year, discounted yearly.
- The result is rounded down to a minor unit, then down to a tick.
- A distribution raises the annual estimate, so it raises the fair value.
- Expired, or no royalties: worth 0.
"""

from __future__ import annotations

from bots.fair_value import (
    SECONDS_PER_YEAR,
    annual_royalties_minor,
    expiry_ts_ns,
    fair_value_minor,
    fair_value_ticks,
    seconds_to_expiry,
)

ANNUAL_MINOR = 120_000_000  # 1,200,000.00 a year over 100,000 units: 12.00 (1200 minor) a unit.
UNITS = 100_000


def test_one_year_at_eight_percent() -> None:
    # 1200 / 1.08 = 1111.11 -> 1111.
    assert fair_value_minor(ANNUAL_MINOR, UNITS, SECONDS_PER_YEAR, 800) == 1111


def test_two_and_a_half_years_at_ten_percent() -> None:
    # 1200/1.1 + 1200/1.21 + 600/1.331 = 1090.909 + 991.736 + 450.789 = 2533.43 -> 2533.
    life_s = 2 * SECONDS_PER_YEAR + SECONDS_PER_YEAR // 2
    assert fair_value_minor(ANNUAL_MINOR, UNITS, life_s, 1000) == 2533
    # In ticks of 0.10 (10 minor): 253 ticks, rounded down.
    assert fair_value_ticks(ANNUAL_MINOR, UNITS, life_s, 10, 1000) == 253


def test_a_distribution_raises_the_fair_value() -> None:
    life_s = 8 * SECONDS_PER_YEAR
    before = fair_value_minor(annual_royalties_minor(ANNUAL_MINOR, 0), UNITS, life_s)
    after = fair_value_minor(annual_royalties_minor(ANNUAL_MINOR, 30_000_000), UNITS, life_s)
    assert annual_royalties_minor(ANNUAL_MINOR, 30_000_000) == 150_000_000
    assert after > before > 0


def test_worthless_when_expired_or_without_royalties() -> None:
    assert fair_value_minor(ANNUAL_MINOR, UNITS, 0) == 0
    assert fair_value_minor(0, UNITS, 5 * SECONDS_PER_YEAR) == 0


def test_expiry_is_midnight_utc() -> None:
    assert expiry_ts_ns("1970-01-02") == 86_400 * 1_000_000_000
    assert seconds_to_expiry("1970-01-02", 86_000 * 1_000_000_000) == 400
    assert seconds_to_expiry("1970-01-02", 90_000 * 1_000_000_000) == 0
