"""Pro-rata royalty allocation by the largest-remainder method.

Invariants:
- The parts are non-negative integers that sum exactly to the amount.
- Each holder gets floor(amount * units / total) and at most one more minor unit; the leftover
  units go to the largest fractional remainders, ties broken by ascending account id, so the
  result is the same in every process whatever the input order.
"""

from __future__ import annotations

from collections.abc import Mapping


def allocate_pro_rata(amount_minor: int, holdings: Mapping[str, int]) -> dict[str, int]:
    """Split amount_minor over holders in proportion to their units.

    Args:
        amount_minor: the cash to distribute, >= 0.
        holdings: units held per account; zero holdings get nothing.

    Returns:
        Cash per account with units, in ascending account order.

    Raises:
        ValueError: if there are no units to pay or the amount is negative.
    """
    if amount_minor < 0:
        raise ValueError(f"royalty amount {amount_minor} is negative")
    holders = sorted((account, units) for account, units in holdings.items() if units > 0)
    total_units = sum(units for _, units in holders)
    if total_units == 0:
        raise ValueError("no units are held: nobody to pay")
    shares: dict[str, int] = {}
    remainders: list[tuple[int, str]] = []
    for account, units in holders:
        share, remainder = divmod(amount_minor * units, total_units)
        shares[account] = share
        remainders.append((-remainder, account))
    leftover = amount_minor - sum(shares.values())
    # Largest remainder first; on equal remainders the smaller account id wins.
    for _, account in sorted(remainders)[:leftover]:
        shares[account] += 1
    return shares
