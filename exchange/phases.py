"""Trading phases of an instrument and the moves between them.

Invariants:
- The book matches continuously only in the CONTINUOUS phase; in every other phase it is in
  call-auction mode, so nothing trades until an uncross.
- A timed phase (AUCTION, OFFERING) has phase_until_ns > 0, the ts_ns at which its timer
  fires; every other phase has phase_until_ns == 0.
- Every change of phase emits one PhaseChanged event, with a reason a person can read.
- Only the call phases (CALL_PHASES: PRE_OPEN, OFFERING, AUCTION) have an auction indicative.
  Outside them an instrument's indicative is (0, 0, 0): leaving them clears a published one
  with IndicativeUpdated(0, 0, 0) just before PhaseChanged (a halted or closed book is not
  going to uncross, and a stale indicative would outlive a cancel during the halt). Entering
  one marks the symbol touched, so the end of the command publishes what the book would
  clear at now (after a Resume, the orders canceled while halted are gone from it).
- The static band bounds order entry and continuous prints; an auction's one price is bound
  only by the orders that cross, and becomes the new reference. That is how the price moves
  past the band: a print outside it (e.g. against orders resting from an older reference)
  starts a volatility auction instead of trading.

The moves (operator commands in capitals, timers in lower case):
  PRE_OPEN --OpenOffering--> OFFERING --offering end--> AUCTION (opening) | PRE_OPEN (failed)
  HALTED, CLOSED before any trade --OpenOffering--> OFFERING
  PRE_OPEN, HALTED, CLOSED --Resume--> AUCTION (opening) --auction end--> CONTINUOUS
  CONTINUOUS --StartAuction, or a trade through the dynamic band--> AUCTION (volatility)
  periodic-auction mode: AUCTION --auction end--> AUCTION (next period)
  any but DELISTED --Halt--> HALTED; --CloseMarket--> CLOSED; --patent expiry--> DELISTED
  (a Halt or CloseMarket of an OFFERING withdraws the offering: every bid canceled, nothing
  sold, OfferingClosed with succeeded false)

An offering is an instrument's first sale: it opens in any of OFFERING_PHASES while the
instrument has never traded (trade_count == 0), never once anything has. So an offering the
operator withdrew (Halt, CloseMarket), or a pre-open instrument closed for the day, may be
offered again straight from HALTED or CLOSED, as a failed offering may from PRE_OPEN; Resume
keeps one meaning in every phase it accepts: open trading through an opening auction (for an
instrument never offered, a direct listing: the issuer sells in that auction).
"""

from __future__ import annotations

from exchange.context import Context
from exchange.events import IndicativeUpdated, Phase, PhaseChanged
from exchange.state import Instrument

CALL_PHASES = (Phase.PRE_OPEN, Phase.OFFERING, Phase.AUCTION)
# Where OpenOffering may start an offering, if the instrument has never traded.
OFFERING_PHASES = (Phase.PRE_OPEN, Phase.HALTED, Phase.CLOSED)


def set_phase(
    ctx: Context, instrument: Instrument, phase: Phase, reason: str, until_ns: int = 0
) -> None:
    """Move an instrument to a phase and put its book in the matching mode that phase needs."""
    instrument.phase = phase
    instrument.phase_reason = reason
    instrument.phase_until_ns = until_ns
    ctx.timers_changed = True
    if phase is not Phase.CONTINUOUS and not instrument.book.in_auction:
        instrument.book.start_auction()
    symbol = instrument.terms.symbol
    if phase in CALL_PHASES:
        ctx.touch(symbol)
    elif instrument.indicative != (0, 0, 0):
        instrument.indicative = (0, 0, 0)
        ctx.events.append(IndicativeUpdated(symbol, 0, 0, 0))
    ctx.events.append(PhaseChanged(symbol, phase, reason, until_ns))


def start_auction(ctx: Context, instrument: Instrument, kind: str, duration_ns: int) -> None:
    """Open a call auction of kind (opening, volatility, periodic) for duration_ns."""
    set_phase(ctx, instrument, Phase.AUCTION, f"{kind} auction", ctx.ts_ns + duration_ns)
