"""Fair value of one royalty share: discounted trailing royalties over the patent's remaining life.

The model (deliberately simple, so prices mean something and a distribution moves them):
- The patent earns ANNUAL royalties equal to its trailing royalties: the figure declared at
  listing plus every distribution recorded in the last twelve months (a distribution is news
  that the stream is larger than believed, so it raises the estimate).
- One unit receives annual / total_units at the end of each remaining whole year, and the
  pro-rata part of the last, partial year at the end of that year (a conservative convention
  that keeps every discount factor a whole power of (1 + rate)).
- Each payment is discounted at DISCOUNT_RATE_BPS a year, compounded yearly.

Invariants:
- Integer inputs, exact rational arithmetic (fractions.Fraction holds integers), one rounding:
  the value per unit is rounded DOWN to a whole minor unit, then DOWN to a whole tick.
- A patent past expiry, or with no royalties, is worth 0.
- Pure: nothing here reads a clock, draws randomness or performs I/O.
"""

from __future__ import annotations

import datetime
from fractions import Fraction

SECONDS_PER_YEAR = 365 * 86_400
DISCOUNT_RATE_BPS = 800  # 8 % a year: a risky, illiquid royalty stream.
NS_PER_S = 1_000_000_000


def annual_royalties_minor(listing_trailing_minor: int, distributed_ttm_minor: int) -> int:
    """Estimate the patent's annual royalties: the listing's figure plus recent distributions."""
    return listing_trailing_minor + distributed_ttm_minor


def fair_value_minor(
    annual_minor: int,
    total_units: int,
    seconds_to_expiry: int,
    discount_rate_bps: int = DISCOUNT_RATE_BPS,
) -> int:
    """Present value of one unit's remaining royalties, in minor units, rounded down."""
    if annual_minor <= 0 or total_units <= 0 or seconds_to_expiry <= 0:
        return 0
    per_unit = Fraction(annual_minor, total_units)
    growth = Fraction(10_000 + discount_rate_bps, 10_000)
    whole_years, rest_s = divmod(seconds_to_expiry, SECONDS_PER_YEAR)
    value = Fraction(0)
    factor = Fraction(1)
    for _ in range(whole_years):
        factor *= growth
        value += per_unit / factor
    if rest_s:
        factor *= growth
        value += per_unit * Fraction(rest_s, SECONDS_PER_YEAR) / factor
    return value.numerator // value.denominator


def fair_value_ticks(
    annual_minor: int,
    total_units: int,
    seconds_to_expiry: int,
    tick_size_minor: int,
    discount_rate_bps: int = DISCOUNT_RATE_BPS,
) -> int:
    """The fair value per unit in ticks, rounded down to a whole tick."""
    value = fair_value_minor(annual_minor, total_units, seconds_to_expiry, discount_rate_bps)
    return value // tick_size_minor


def expiry_ts_ns(expiry_date: str) -> int:
    """00:00 UTC of the expiry date ("YYYY-MM-DD"), in ns since the epoch."""
    day = datetime.date.fromisoformat(expiry_date)
    midnight = datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC)
    return int(midnight.timestamp()) * NS_PER_S


def seconds_to_expiry(expiry_date: str, now_ts_ns: int) -> int:
    """Whole seconds from now to the expiry (0 once expired)."""
    return max(0, (expiry_ts_ns(expiry_date) - now_ts_ns) // NS_PER_S)
