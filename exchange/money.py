"""Cash arithmetic: notional values, fees and reservations, in integer minor units.

Invariants:
- notional_minor = price_ticks * tick_size_minor * quantity_units, exactly.
- Fees round DOWN to the minor unit (in the payer's favour). Because floor(a) + floor(b) <=
  floor(a + b), the fees of an order's partial fills never add up to more than the fee of the
  whole order, so the reservation made at entry always covers every fee it later pays.
- A buy order reserves, for its leaves, notional at its limit price plus the maximum of the
  maker and taker fee on that notional; fills happen at or below the limit, so the reservation
  covers what the order can ever pay.
"""

from __future__ import annotations

BPS_DENOMINATOR = 10_000


def notional_minor(price_ticks: int, tick_size_minor: int, quantity_units: int) -> int:
    """Return the cash value of quantity_units at price_ticks."""
    return price_ticks * tick_size_minor * quantity_units


def fee_minor(notional: int, fee_bps: int) -> int:
    """Return the fee on a notional, rounded down to the minor unit."""
    return notional * fee_bps // BPS_DENOMINATOR


def buy_reservation_minor(
    price_ticks: int, tick_size_minor: int, leaves_units: int, max_fee_bps: int
) -> int:
    """Return the cash a buy order must hold for its leaves at its limit price."""
    notional = price_ticks * tick_size_minor * leaves_units
    return notional + notional * max_fee_bps // BPS_DENOMINATOR
