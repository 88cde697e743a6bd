"""Operator commands: accounts, cash, listing, issuance, offerings, royalties, phases, controls.

Invariants:
- Only an operator (or the local administrator, ADMIN_ACTOR) reaches these handlers: the core
  checks the actor's role before dispatching here.
- Units come into existence only by IssueShares (from ISSUANCE_ACCOUNT to the issuer); cash
  enters only by Deposit and leaves only by Withdraw (through BANK_ACCOUNT). The journal
  verifier enforces the same rule from the records alone.
- The fees collect in FEE_ACCOUNT, the venue's own account: it is no Account (no one opens,
  funds or trades from it), but an operator withdraws from it like from any account, so the
  venue's revenue leaves through the bank, journaled like any withdrawal.
- No more than BALANCE_MAX of an asset is ever inside the exchange, so every balance (the
  bank's, minus that, included) and every posting fits the journal's 64-bit integers: a
  Deposit that would go past it is refused (LIMIT_EXCEEDED); a share class has at most
  QUANTITY_UNITS_MAX units. Nothing else brings value in: royalties, trades and fees move it.
- Currencies and symbols are disjoint name spaces, for all time: balances are keyed by
  (account, asset), so a symbol equal to a currency code would make units and cash one
  balance. A currency is a code of exchange/currencies.py (ISO 4217, three capital letters:
  CURRENCY), checked by every command that names one (Deposit, Withdraw, ListAsset;
  IssueShares and DistributeRoyalty use the listing's), and a symbol may never have the form
  CURRENCY, whatever currencies are in use so far or are added to the table later.
- An offering ends before its patent expires, so its end, not delisting, closes it.
- Every time a command gives (a patent's expiry, an offering's end, an auction's duration)
  keeps what the exchange stores within TS_NS_MAX (2**63 - 1 ns), the wire's int64 bound and
  within what the journal and snapshots encode: a later one is refused (VALIDATION_ERROR),
  never stored, or no snapshot or state_hash could ever be taken again. An offering ends
  before its patent's expiry, so within it; an auction lasts at most AUCTION_NS_MAX.
- A royalty distribution pays each holder at the record point (this command's seq; units held
  for open sell orders count as owned) its largest-remainder share; the parts sum to the
  amount; a (symbol, period_id) pays once. The payer is reported the charge (RoyaltyCharged,
  with the part paid back to itself as a holder), each holder its part (RoyaltyPaid).
- Each handler checks everything before its first posting: a rejection changes nothing.
"""

from __future__ import annotations

import re

from exchange.calendar import NS_PER_YEAR, TS_NS_MAX, InvalidDate, format_date, parse_date
from exchange.commands import (
    CloseMarket,
    Deposit,
    DistributeRoyalty,
    Halt,
    IssueShares,
    KillSwitch,
    ListAsset,
    OpenAccount,
    OpenOffering,
    Resume,
    StartAuction,
    TradingMode,
    Withdraw,
)
from exchange.context import Context
from exchange.currencies import cash_text, is_currency
from exchange.events import (
    AccountOpened,
    AssetListed,
    CashDeposited,
    CashWithdrawn,
    Event,
    KillSwitchChanged,
    OfferingOpened,
    Phase,
    RoyaltyCharged,
    RoyaltyDistributed,
    RoyaltyPaid,
    SharesIssued,
)
from exchange.phases import OFFERING_PHASES, set_phase, start_auction
from exchange.reasons import Reject
from exchange.royalties import allocate_pro_rata
from exchange.state import (
    FEE_ACCOUNT,
    Account,
    Asset,
    ExchangeState,
    Instrument,
    LiveOrder,
    RoyaltyPeriod,
)
from exchange.timers import withdraw_offering
from exchange.trading import (
    OFFERING_CL_ORD_ID,
    Rejection,
    apply_book_events,
    cancel_orders_of,
    report,
)
from ledger.records import BALANCE_MAX, BANK_ACCOUNT, ISSUANCE_ACCOUNT, Bucket, Posting
from matching.events import OrderAccepted
from matching.limits import PRICE_TICKS_MAX, QUANTITY_UNITS_MAX
from matching.orders import CancelReason, OrderType, Side, TimeInForce

# Each format matches a whole name: \Z, not $, which also matches before a final newline (with
# $, "2030-Q1\n" would be a second period 2030-Q1 and "USD\n" a second currency USD).
ACCOUNT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}\Z")
RESERVED_ACCOUNT_PREFIX = "exchange:"
CURRENCY = re.compile(r"^[A-Z]{3}\Z")
PATENT_ID = re.compile(r"^[A-Z]{2}[0-9A-Z]{4,14}\Z")
SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9.-]{1,31}\Z")
PERIOD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,31}\Z")
TEXT_LENGTH_MAX = 200
LICENSEES_MAX = 100
FAMILY_MAX = 50  # Other members of a listed patent's family.
FEE_BPS_MAX = 1_000  # 10%: a fee schedule above that is a typo, not a business decision.
BAND_BPS_MAX = 10_000
AMOUNT_MINOR_MAX = 10**15  # Per command: far above any real deposit or royalty payment.
# The longest auction (opening, volatility, or a periodic auction's interval): its end, the
# time it starts plus this, must stay within TS_NS_MAX. A year is far beyond any real auction,
# and keeps every end representable for any start before 2261.
AUCTION_NS_MAX = NS_PER_YEAR

_AVAILABLE = Bucket.AVAILABLE


def _require(condition: bool, reason: Reject, message: str) -> None:
    if not condition:
        raise Rejection(reason, message)


def _existing_account(state: ExchangeState, account_id: str) -> Account:
    account = state.accounts.get(account_id)
    _require(account is not None, Reject.UNKNOWN_ACCOUNT, f"no account {account_id!r}")
    assert account is not None
    return account


def _existing_instrument(state: ExchangeState, symbol: str) -> Instrument:
    instrument = state.instruments.get(symbol)
    _require(instrument is not None, Reject.UNKNOWN_SYMBOL, f"no instrument {symbol!r}")
    assert instrument is not None
    return instrument


def _check_amount(amount_minor: int, what: str) -> None:
    _require(
        0 < amount_minor <= AMOUNT_MINOR_MAX,
        Reject.VALIDATION_ERROR,
        f"{what} must be between 1 and {AMOUNT_MINOR_MAX} minor units",
    )


def _check_currency(currency: str) -> None:
    # The table, not the form: a code read with the wrong minor units is 10 or 100 times off.
    _require(
        is_currency(currency),
        Reject.VALIDATION_ERROR,
        f"currency {currency!r} is not an ISO 4217 currency the exchange settles in",
    )


# Accounts and cash.


def open_account(state: ExchangeState, ctx: Context, command: OpenAccount) -> Event:
    account_id = command.account_id
    _require(
        ACCOUNT_ID.match(account_id) is not None,
        Reject.VALIDATION_ERROR,
        "an account id has 1 to 64 letters, digits or _.:- and starts with a letter or digit",
    )
    _require(
        account_id not in state.accounts and not account_id.startswith(RESERVED_ACCOUNT_PREFIX),
        Reject.ALREADY_EXISTS,
        f"account {account_id!r} already exists",
    )
    state.accounts[account_id] = Account(account_id, command.role)
    event = AccountOpened(account_id, command.role)
    report(state, ctx, account_id, event)
    return event


def deposit(state: ExchangeState, ctx: Context, command: Deposit) -> Event:
    _existing_account(state, command.account_id)
    _check_currency(command.currency)
    _check_amount(command.amount_minor, "a deposit")
    # Deposits add up: the bank's balance is minus their sum, which must fit the journal's
    # 64-bit integers (ledger.records.BALANCE_MAX), as must every balance it bounds.
    outstanding = -ctx.balances.available(BANK_ACCOUNT, command.currency)
    _require(
        command.amount_minor <= BALANCE_MAX - outstanding,
        Reject.LIMIT_EXCEEDED,
        f"{cash_text(outstanding, command.currency)} is inside the exchange: a deposit may "
        f"bring it to {cash_text(BALANCE_MAX, command.currency)} at most",
    )
    ctx.post(
        [
            Posting(
                command.currency,
                command.amount_minor,
                BANK_ACCOUNT,
                _AVAILABLE,
                command.account_id,
                _AVAILABLE,
            )
        ]
    )
    event = CashDeposited(command.account_id, command.currency, command.amount_minor)
    report(state, ctx, command.account_id, event)
    return event


def withdraw(state: ExchangeState, ctx: Context, command: Withdraw) -> Event:
    if command.account_id != FEE_ACCOUNT:  # The venue's revenue: it has no Account to find.
        _existing_account(state, command.account_id)
    # Only cash leaves through the bank: without this check units would, named as a currency.
    _check_currency(command.currency)
    _check_amount(command.amount_minor, "a withdrawal")
    available = ctx.balances.available(command.account_id, command.currency)
    _require(
        command.amount_minor <= available,
        Reject.INSUFFICIENT_BALANCE,
        f"{command.account_id} has {cash_text(available, command.currency)} available",
    )
    ctx.post(
        [
            Posting(
                command.currency,
                command.amount_minor,
                command.account_id,
                _AVAILABLE,
                BANK_ACCOUNT,
                _AVAILABLE,
            )
        ]
    )
    event = CashWithdrawn(command.account_id, command.currency, command.amount_minor)
    report(state, ctx, command.account_id, event)
    return event


# Listing and issuance.


def _family_of(listing: ListAsset) -> tuple[str, ...]:
    return (listing.patent_id, *listing.family)


def list_asset(state: ExchangeState, ctx: Context, command: ListAsset) -> Event:
    _require(
        PATENT_ID.match(command.patent_id) is not None,
        Reject.VALIDATION_ERROR,
        f"patent id {command.patent_id!r} is not like US10123456B2",
    )
    family = _family_of(command)
    _require(
        len(command.family) <= FAMILY_MAX
        and all(PATENT_ID.match(member) is not None for member in command.family)
        and len(set(family)) == len(family),
        Reject.VALIDATION_ERROR,
        f"a family lists at most {FAMILY_MAX} other patents like US10123456B2, each once",
    )
    listed = {member for asset in state.assets.values() for member in _family_of(asset.listing)}
    already = [member for member in family if member in listed]
    _require(
        not already,
        Reject.ALREADY_EXISTS,
        f"patent {already[0] if already else ''} is already listed (itself or in a family)",
    )
    for text, what in (
        (command.title, "title"),
        (command.cpc_class, "CPC class"),
        (command.royalty_terms, "royalty terms"),
    ):
        _require(
            0 < len(text) <= TEXT_LENGTH_MAX,
            Reject.VALIDATION_ERROR,
            f"the {what} must have 1 to {TEXT_LENGTH_MAX} characters",
        )
    _require(
        re.fullmatch(r"[A-Z]{2}", command.jurisdiction) is not None,
        Reject.VALIDATION_ERROR,
        "the jurisdiction is a two-letter code",
    )
    _require(
        len(command.licensees) <= LICENSEES_MAX
        and all(0 < len(name) <= TEXT_LENGTH_MAX for name in command.licensees),
        Reject.VALIDATION_ERROR,
        "licensees must be named, at most 100",
    )
    _check_currency(command.currency)
    _require(
        0 <= command.trailing_royalties_minor <= AMOUNT_MINOR_MAX,
        Reject.VALIDATION_ERROR,
        "trailing royalties must be a non-negative amount",
    )
    _existing_account(state, command.owner_account)
    try:
        filed_ts_ns = parse_date(command.filing_date)
        expiry_ts_ns = parse_date(command.expiry_date)
    except InvalidDate as error:
        raise Rejection(Reject.VALIDATION_ERROR, str(error)) from None
    _require(
        expiry_ts_ns <= TS_NS_MAX,
        Reject.VALIDATION_ERROR,
        f"expiry date {command.expiry_date} is after {format_date(TS_NS_MAX)}, the last day "
        "the exchange's clock reaches",
    )
    _require(
        filed_ts_ns < expiry_ts_ns, Reject.VALIDATION_ERROR, "a patent expires after it was filed"
    )
    _require(
        expiry_ts_ns > ctx.ts_ns,
        Reject.ASSET_EXPIRED,
        f"patent {command.patent_id} expired on {command.expiry_date}",
    )
    state.assets[command.patent_id] = Asset(command, expiry_ts_ns)
    event = AssetListed(command.patent_id, command.title, command.expiry_date)
    ctx.events.append(event)
    return event


def _check_terms(command: IssueShares) -> None:
    _require(
        SYMBOL.match(command.symbol) is not None,
        Reject.VALIDATION_ERROR,
        f"symbol {command.symbol!r} is not like RS-US10123456B2",
    )
    # Units and cash share no balance: a symbol is never a possible currency code, so no
    # deposit, now or later, can name it (see the module's invariants).
    _require(
        CURRENCY.match(command.symbol) is None,
        Reject.VALIDATION_ERROR,
        f"symbol {command.symbol!r} has the form of a currency code (three capital letters); "
        "a share class needs a name that no currency can have",
    )
    _require(
        0 < command.lot_size_units <= command.total_units <= QUANTITY_UNITS_MAX
        and command.total_units % command.lot_size_units == 0,
        Reject.INVALID_QUANTITY,
        "total units must be a positive multiple of the lot size",
    )
    _require(
        0 < command.tick_size_minor <= AMOUNT_MINOR_MAX,
        Reject.VALIDATION_ERROR,
        "the tick size is a positive number of minor units",
    )
    _require(
        0 <= command.maker_fee_bps <= FEE_BPS_MAX and 0 <= command.taker_fee_bps <= FEE_BPS_MAX,
        Reject.VALIDATION_ERROR,
        f"fees are 0 to {FEE_BPS_MAX} bps",
    )
    _require(
        0 < command.reference_price_ticks <= PRICE_TICKS_MAX,
        Reject.VALIDATION_ERROR,
        "the reference price must be a positive number of ticks",
    )
    _require(
        0 < command.static_band_bps <= BAND_BPS_MAX
        and 0 < command.dynamic_band_bps <= BAND_BPS_MAX,
        Reject.VALIDATION_ERROR,
        "price bands are 1 to 10,000 bps",
    )
    _require(
        0 < command.volatility_auction_ns <= AUCTION_NS_MAX
        and 0 < command.opening_auction_ns <= AUCTION_NS_MAX,
        Reject.VALIDATION_ERROR,
        f"auctions last a positive time of at most {AUCTION_NS_MAX} ns",
    )
    periodic = command.trading_mode is TradingMode.PERIODIC_AUCTION
    _require(
        (command.auction_interval_ns > 0) == periodic,
        Reject.VALIDATION_ERROR,
        "an auction interval is given exactly for the periodic-auction mode",
    )
    _require(
        command.auction_interval_ns <= AUCTION_NS_MAX,
        Reject.VALIDATION_ERROR,
        f"the auction interval is at most {AUCTION_NS_MAX} ns",
    )


def issue_shares(state: ExchangeState, ctx: Context, command: IssueShares) -> Event:
    asset = state.assets.get(command.patent_id)
    _require(asset is not None, Reject.UNKNOWN_ASSET, f"no listed patent {command.patent_id}")
    assert asset is not None
    _require(
        asset.expiry_ts_ns > ctx.ts_ns,
        Reject.ASSET_EXPIRED,
        f"patent {command.patent_id} has expired",
    )
    _check_terms(command)
    _require(
        command.symbol not in state.instruments,
        Reject.ALREADY_EXISTS,
        f"symbol {command.symbol} already exists",
    )
    _existing_account(state, command.issuer_account)
    _require(
        command.issuer_account == asset.listing.owner_account,
        Reject.FORBIDDEN,
        "only the patent's owner can be issued its shares",
    )
    _require(
        command.currency == asset.listing.currency,
        Reject.VALIDATION_ERROR,
        f"the patent's royalties are in {asset.listing.currency}",
    )
    instrument = Instrument(command, asset)
    state.instruments[command.symbol] = instrument
    asset.symbols.append(command.symbol)
    ctx.post(
        [
            Posting(
                command.symbol,
                command.total_units,
                ISSUANCE_ACCOUNT,
                _AVAILABLE,
                command.issuer_account,
                _AVAILABLE,
            )
        ]
    )
    event = SharesIssued(
        command.symbol, command.patent_id, command.issuer_account, command.total_units
    )
    report(state, ctx, command.issuer_account, event)
    set_phase(ctx, instrument, Phase.PRE_OPEN, "shares issued")
    return event


def open_offering(state: ExchangeState, ctx: Context, command: OpenOffering) -> Event:
    instrument = _existing_instrument(state, command.symbol)
    terms = instrument.terms
    # An offering is an instrument's first sale (exchange/phases.py, OFFERING_PHASES): once
    # anything has traded, holders other than the issuer set the price.
    _require(
        instrument.trade_count == 0,
        Reject.MARKET_CLOSED,
        f"{command.symbol} has traded: an offering is only an instrument's first sale",
    )
    # Bids resting since pre-open join the offering (an investor cannot block it); a resting
    # ask would sell below the offering's minimum, so the issuer must cancel it first.
    _require(
        instrument.phase in OFFERING_PHASES and instrument.book.best_ask() is None,
        Reject.MARKET_CLOSED,
        "an offering opens on a pre-open, halted or closed instrument with no sell orders",
    )
    _require(
        command.units > 0 and command.units % terms.lot_size_units == 0,
        Reject.INVALID_QUANTITY,
        "offered units must be a positive multiple of the lot",
    )
    _require(
        0 < command.min_price_ticks <= PRICE_TICKS_MAX,
        Reject.VALIDATION_ERROR,
        "the minimum price must be a positive number of ticks",
    )
    _require(
        command.end_ts_ns > ctx.ts_ns,
        Reject.VALIDATION_ERROR,
        "the offering must end in the future",
    )
    # Delisting at the expiry would end it with nothing sold, whatever the bids.
    asset = instrument.asset
    _require(
        command.end_ts_ns < asset.expiry_ts_ns,
        Reject.VALIDATION_ERROR,
        f"the offering must end before the patent expires on {asset.listing.expiry_date}",
    )
    issuer = terms.issuer_account
    available = ctx.balances.available(issuer, terms.symbol)
    _require(
        command.units <= available,
        Reject.INSUFFICIENT_SHARES,
        f"the issuer has {available} units available",
    )
    # The offering's order would meet the issuer's own bids: self-trade prevention would
    # cancel one side, and the offering could end with its order gone.
    _require(
        not any(
            state.orders[order_id].instrument is instrument
            for order_id in state.accounts[issuer].open_orders
        ),
        Reject.VALIDATION_ERROR,
        "the issuer has orders in this instrument: cancel them before its offering",
    )
    order_id = state.next_order_id
    state.next_order_id += 1
    order = LiveOrder(
        order_id,
        issuer,
        instrument,
        OFFERING_CL_ORD_ID,
        Side.SELL,
        OrderType.LIMIT,
        TimeInForce.GTC,
        command.min_price_ticks,
        command.units,
    )
    results = instrument.book.place(
        order_id, issuer, Side.SELL, command.min_price_ticks, command.units
    )
    assert results[0].__class__ is OrderAccepted, f"offering order refused: {results}"
    state.orders[order_id] = order
    state.accounts[issuer].open_orders[order_id] = None
    instrument.offering = command
    instrument.offering_order_id = order_id
    ctx.hold(issuer, terms.symbol, command.units)
    apply_book_events(state, ctx, instrument, results)
    event = OfferingOpened(
        command.symbol,
        command.units,
        command.min_price_ticks,
        command.end_ts_ns,
        command.all_or_none,
    )
    ctx.events.append(event)
    set_phase(ctx, instrument, Phase.OFFERING, "offering open", command.end_ts_ns)
    return event


# Royalties.


def distribute_royalty(state: ExchangeState, ctx: Context, command: DistributeRoyalty) -> Event:
    instrument = _existing_instrument(state, command.symbol)
    _require(
        PERIOD_ID.match(command.period_id) is not None,
        Reject.VALIDATION_ERROR,
        "a period id has 1 to 32 letters, digits or _.:-",
    )
    _require(
        command.period_id not in instrument.royalties,
        Reject.DUPLICATE_DISTRIBUTION,
        f"period {command.period_id} of {command.symbol} was already paid",
    )
    _existing_account(state, command.payer_account)
    _check_amount(command.amount_minor, "a royalty")
    currency = instrument.terms.currency
    available = ctx.balances.available(command.payer_account, currency)
    _require(
        command.amount_minor <= available,
        Reject.INSUFFICIENT_BALANCE,
        f"the payer has {cash_text(available, currency)} available",
    )
    symbol = command.symbol
    balances = ctx.balances
    holdings = {
        account: balances.available(account, symbol) + balances.held(account, symbol)
        for account in instrument.holders
    }
    shares = allocate_pro_rata(command.amount_minor, holdings)
    payer = command.payer_account
    ctx.post(
        [
            Posting(currency, amount, payer, _AVAILABLE, account, _AVAILABLE)
            for account, amount in shares.items()
            if amount and account != payer
        ]
    )
    total_units = sum(holdings.values())
    # The payer's cash moves too: it is reported to it like the holders' parts, first.
    own_share = shares.get(payer, 0)
    charged = RoyaltyCharged(payer, symbol, command.period_id, command.amount_minor, own_share)
    report(state, ctx, payer, charged)
    for account, amount in shares.items():
        paid = RoyaltyPaid(account, symbol, command.period_id, holdings[account], amount)
        report(state, ctx, account, paid)
    period = RoyaltyPeriod(
        command.period_id, ctx.seq, ctx.ts_ns, command.amount_minor, total_units, payer
    )
    period.payments = {account: (holdings[account], amount) for account, amount in shares.items()}
    instrument.royalties[command.period_id] = period
    event = RoyaltyDistributed(
        symbol, command.period_id, payer, command.amount_minor, total_units, len(shares)
    )
    ctx.events.append(event)
    return event


# Phases and controls.


def halt(state: ExchangeState, ctx: Context, command: Halt) -> Event:
    instrument = _existing_instrument(state, command.symbol)
    _require(
        instrument.phase not in (Phase.DELISTED, Phase.HALTED),
        Reject.MARKET_CLOSED,
        f"{command.symbol} is {instrument.phase.value}",
    )
    why = f"halted by {command.actor}"
    if instrument.phase is Phase.OFFERING:
        withdraw_offering(state, ctx, instrument, why, CancelReason.OPERATOR)
    _cancel_market_orders(state, ctx, instrument)
    set_phase(ctx, instrument, Phase.HALTED, why)
    return ctx.events[-1]


def _cancel_market_orders(state: ExchangeState, ctx: Context, instrument: Instrument) -> None:
    # A market order (always IOC) rests only for an auction's uncross. Stopped without one, the
    # auction leaves it nothing to wait for: it would hold its cash until an operator resumed,
    # then trade at whatever that auction cleared at.
    canceled = instrument.book.cancel_market_orders()
    if canceled:
        apply_book_events(state, ctx, instrument, canceled)


def resume(state: ExchangeState, ctx: Context, command: Resume) -> Event:
    instrument = _existing_instrument(state, command.symbol)
    _require(
        instrument.phase in (Phase.PRE_OPEN, Phase.HALTED, Phase.CLOSED),
        Reject.MARKET_CLOSED,
        f"{command.symbol} is {instrument.phase.value}",
    )
    start_auction(ctx, instrument, "opening", instrument.terms.opening_auction_ns)
    return ctx.events[-1]


def start_volatility_auction(state: ExchangeState, ctx: Context, command: StartAuction) -> Event:
    instrument = _existing_instrument(state, command.symbol)
    _require(
        instrument.phase is Phase.CONTINUOUS,
        Reject.MARKET_CLOSED,
        f"{command.symbol} is {instrument.phase.value}, not continuous",
    )
    _require(
        0 < command.duration_ns <= AUCTION_NS_MAX,
        Reject.VALIDATION_ERROR,
        f"an auction lasts a positive time of at most {AUCTION_NS_MAX} ns",
    )
    start_auction(ctx, instrument, "volatility", command.duration_ns)
    return ctx.events[-1]


def close_market(state: ExchangeState, ctx: Context, command: CloseMarket) -> Event:
    instrument = _existing_instrument(state, command.symbol)
    _require(
        instrument.phase not in (Phase.DELISTED, Phase.CLOSED),
        Reject.MARKET_CLOSED,
        f"{command.symbol} is {instrument.phase.value}",
    )
    why = f"closed by {command.actor}"
    if instrument.phase is Phase.OFFERING:
        withdraw_offering(state, ctx, instrument, why, CancelReason.OPERATOR)
    expired = instrument.book.expire_day()
    if expired:
        apply_book_events(state, ctx, instrument, expired)
    _cancel_market_orders(state, ctx, instrument)
    set_phase(ctx, instrument, Phase.CLOSED, why)
    return ctx.events[-1]


def kill_switch(state: ExchangeState, ctx: Context, command: KillSwitch) -> Event:
    account = _existing_account(state, command.account_id)
    account.suspended = command.engaged
    if command.engaged:
        cancel_orders_of(state, ctx, command.account_id, "", CancelReason.KILL_SWITCH)
    event = KillSwitchChanged(command.account_id, command.engaged)
    report(state, ctx, command.account_id, event)
    return event
