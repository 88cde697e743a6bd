"""The clearing price of a call auction: one uniform price for every trade of an uncross.

Invariants:
- `clearing_price` is a pure function of the aggregated book and a reference price: the same
  levels always give the same answer, whatever order the caller built them in.
- Candidate prices are exactly the distinct prices of the levels given (both sides) that lie
  between the best ask and the best bid, plus the reference price when it lies there too
  (best ask <= reference <= best bid). Without it, a book whose every level gives the same
  volume and imbalance (one bid and one ask, or market orders resting at the band edges)
  would clear at a level price far from the reference although the reference itself clears
  just as much: the DESIGN §4 rule picks the reference then, as Xetra and Euronext do.
  Prices strictly between two levels other than the reference are not candidates (Xetra's
  reading too): outside the range the reference pulls to the nearest level.
- The chosen price maximizes executable volume = min(buy volume at >= P, sell volume at <= P),
  then minimizes |imbalance| (imbalance = buy volume - sell volume at P), then minimizes
  |P - reference|, then is the lower price. Every step is a total order, so there is exactly
  one answer. (The last step keeps the order total but no longer decides anything: the prices
  that tie on volume and imbalance form a run, so two of them either side of the reference
  put the reference in that run, and it is nearest itself.)
- No executable volume means no auction price: the function returns None.
- Nothing here reads a clock, draws randomness or performs I/O.

Worked example (reference 100):
  bids 10@102, 10@100     asks 5@99, 10@101
  P=99:  buy 20, sell 5  -> executable 5
  P=100: buy 20, sell 5  -> executable 5
  P=101: buy 10, sell 15 -> executable 10, imbalance -5
  P=102: buy 10, sell 15 -> executable 10, imbalance -5
  101 and 102 tie on volume and imbalance; 101 is nearer the reference: clear 10 at 101.

Worked example with the reference between the levels (reference 1000):
  bids 10@1100            asks 10@900
  P=900:  buy 10, sell 10 -> executable 10, imbalance 0
  P=1000: buy 10, sell 10 -> executable 10, imbalance 0  (the reference, not a level)
  P=1100: buy 10, sell 10 -> executable 10, imbalance 0
  All three tie on volume and imbalance; the reference is nearest itself: clear 10 at 1000.
"""

from __future__ import annotations

from collections.abc import Sequence

from matching.events import IndicativeUncross


def clearing_price(
    bids: Sequence[tuple[int, int]],
    asks: Sequence[tuple[int, int]],
    reference_price_ticks: int,
) -> IndicativeUncross | None:
    """Choose the uncross price of an auction book.

    Args:
        bids: (price_ticks, total leaves) per bid level, best (highest) price first.
        asks: (price_ticks, total leaves) per ask level, best (lowest) price first.
        reference_price_ticks: the price that breaks a tie left by volume and imbalance;
            itself a candidate when it lies between the best ask and the best bid.

    Returns:
        The price, the executable volume and the imbalance at that price (buy surplus
        positive, sell surplus negative), or None when nothing can execute.
    """
    if not bids or not asks or bids[0][0] < asks[0][0]:
        return None  # Not crossed: no price has both a buyer and a seller.
    # Only prices between the lowest ask and the highest bid can execute anything.
    low, high = asks[0][0], bids[0][0]
    prices = {price for price, _ in bids if price >= low} | {
        price for price, _ in asks if price <= high
    }
    if low <= reference_price_ticks <= high:
        prices.add(reference_price_ticks)  # So the tie-break can pick the reference itself.
    candidates = sorted(prices)
    # Sell volume at P: sum of asks priced <= P (asks ascending, so a running sum upwards).
    sell_volumes: list[int] = []
    index, running = 0, 0
    for price in candidates:
        while index < len(asks) and asks[index][0] <= price:
            running += asks[index][1]
            index += 1
        sell_volumes.append(running)
    # Buy volume at P: sum of bids priced >= P (bids descending, so a running sum downwards).
    buy_volumes = [0] * len(candidates)
    index, running = 0, 0
    for position in range(len(candidates) - 1, -1, -1):
        price = candidates[position]
        while index < len(bids) and bids[index][0] >= price:
            running += bids[index][1]
            index += 1
        buy_volumes[position] = running

    best: tuple[int, int, int, int] | None = None
    for price, buy, sell in zip(candidates, buy_volumes, sell_volumes, strict=True):
        executable = min(buy, sell)
        if executable == 0:
            continue
        key = (-executable, abs(buy - sell), abs(price - reference_price_ticks), price)
        if best is None or key < best:
            best = key
    if best is None:
        return None
    executable, price = -best[0], best[3]
    position = candidates.index(price)
    return IndicativeUncross(price, executable, buy_volumes[position] - sell_volumes[position])
