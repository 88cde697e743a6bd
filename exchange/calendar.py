"""Calendar arithmetic on integer nanoseconds since the Unix epoch (UTC), without a clock.

Invariants:
- Pure integer arithmetic: no datetime, no time zone database, no floats. A date string maps to
  exactly one ts_ns (00:00:00 UTC of that day) in every process.
- A trading day is a UTC calendar day: day index = ts_ns // NS_PER_DAY.
"""

from __future__ import annotations

import re

NS_PER_SECOND = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_SECOND
NS_PER_YEAR = 365 * NS_PER_DAY  # The trailing-twelve-month window; leap days are ignored.
# The latest ts_ns there is: the wire carries ints as int64, and msgpack (the journal, the
# snapshot, state_hash) cannot encode an int past 2**64 - 1. A date, deadline or expiry a client
# gives that lies later is refused, never stored (2262-04-11 23:47:16.854775807 UTC).
TS_NS_MAX = (1 << 63) - 1

_DATE = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})\Z")
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


class InvalidDate(ValueError):
    """A date string is not a real YYYY-MM-DD calendar date."""


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def days_from_civil(year: int, month: int, day: int) -> int:
    """Return days since 1970-01-01 (Howard Hinnant's days_from_civil)."""
    year -= month <= 2
    era = (year if year >= 0 else year - 399) // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


def civil_from_days(days: int) -> tuple[int, int, int]:
    """Return (year, month, day) of a day count since 1970-01-01."""
    days += 719_468
    era = (days if days >= 0 else days - 146_096) // 146_097
    day_of_era = days - era * 146_097
    year_of_era = (
        day_of_era - day_of_era // 1460 + day_of_era // 36_524 - day_of_era // 146_096
    ) // 365
    year = year_of_era + era * 400
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    month_index = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * month_index + 2) // 5 + 1
    month = month_index + (3 if month_index < 10 else -9)
    return year + (month <= 2), month, day


def parse_date(text: str) -> int:
    """Return ts_ns of 00:00 UTC on a YYYY-MM-DD date; raise InvalidDate otherwise."""
    match = _DATE.match(text)
    if match is None:
        raise InvalidDate(f"date {text!r} is not in YYYY-MM-DD form")
    year, month, day = (int(part) for part in match.groups())
    if not 1 <= month <= 12:
        raise InvalidDate(f"date {text!r} has no month {month}")
    month_days = 29 if month == 2 and _is_leap(year) else _DAYS_IN_MONTH[month - 1]
    if not 1 <= day <= month_days:
        raise InvalidDate(f"date {text!r} has no day {day}")
    return days_from_civil(year, month, day) * NS_PER_DAY


def format_date(ts_ns: int) -> str:
    """Return the YYYY-MM-DD UTC date that contains ts_ns."""
    year, month, day = civil_from_days(ts_ns // NS_PER_DAY)
    return f"{year:04d}-{month:02d}-{day:02d}"


def trading_day(ts_ns: int) -> int:
    """Return the index of the UTC day that contains ts_ns."""
    return ts_ns // NS_PER_DAY
