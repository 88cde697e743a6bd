"""The wire protocol: JSON text frames, typed request parameters, exact decimal conversion.

    request   {"id": "7", "method": "order.place", "params": {...}}
    response  {"id": "7", "status": 200, "result": {...}}
              {"id": "7", "status": 4xx/5xx, "error": {"code": "...", "message": "..."}}

Methods (params in the Struct of METHODS; prices and cash as decimal strings):
    session.logon {token}                   first frame, unless `Authorization: Bearer` was sent
    session.cancel_on_disconnect {enabled, scope?}  when this connection ends, cancel the orders
                                            it placed (scope "session") or all the account's
                                            ("account"); a server restart ends it too
    order.place {symbol, cl_ord_id, side, quantity, price?, type?, time_in_force?, post_only?,
                 stp_mode?, expire_ts_ns?}  resending the same cl_ord_id returns the same order;
                                            type "limit" (the default) needs a price; a
                                            "market" order takes none and must be
                                            time_in_force "ioc" or "fok" (the default "gtc" is
                                            400 VALIDATION_ERROR), not post-only; it trades no
                                            further than the static price band's edge
    order.cancel / order.status {order_id | cl_ord_id}
    order.amend {order_id | cl_ord_id, price, quantity}
    order.cancel_all {symbol?}              every open order of the caller (in one symbol)
    orders.open {symbol?, limit?, after?}   one page of the caller's open orders, in order_id
                                            order: those with order_id > after (0: from the
                                            first); `next` is the `after` of the next page
    account.fills {symbol?, limit?, after?}  one page of the day's fills, oldest first; `after`
                                            is the `next` of the page before (0: from the first)
    account.balances {}   instruments.list {}   book.snapshot {symbol, depth?}
    account.royalties {}  instrument.info {symbol}
    executions.subscribe {}                 push the account's private events
    md.subscribe / md.unsubscribe {symbol, channels}   book.l2, book.l3, trades, ticker, status,
                                            liquidity
    subscribe / unsubscribe {channel, symbol?}  the same, one channel at a time: the private
                                            "executions" and "balances" (no symbol: the
                                            caller's account) or a market-data channel
    op.open_account, op.deposit, op.withdraw, op.list_asset, op.issue_shares,
    op.open_offering, op.distribute_royalty, op.kill_switch, op.cancel_all, op.halt,
    op.resume, op.start_auction, op.close_market  (operator; op.withdraw from account
                                            "exchange:fees" takes out the fees collected)
Pages: an answer whose size grows with the account's state comes in pages of at most `limit`
items (PAGE_LIMIT_DEFAULT unless given, at most PAGE_LIMIT_MAX), so no answer is larger than
a page: `{..., "next": N}` where N is the cursor to send as `after` for the page that follows,
or null on the last page. Each page is read from the state when it is answered: an order or a
fill that comes during a walk is in a later page, one that goes is not shown again. (Other
answers grow only with what the operator does, instruments listed and royalties distributed,
or are cut by `depth`; a book.l3 snapshot, which lists every resting order, is a push of
md.subscribe, not an answer.)
Statuses: 400 malformed or invalid, 401 not logged on, 403 not allowed, 404 unknown (also
someone else's order), 409 duplicate or too late, 422 refused by the market's rules, 429 rate
limited (retry_after_ms), 500 INTERNAL: outcome unknown (query the order by cl_ord_id), 503
OVERLOADED (retry soon) or UNAVAILABLE (shutting down, stopped, or the part asked for is off;
reconnect later): nothing was done.

Invariants:
- Malformed input never reaches the core: every frame is decoded by msgspec into a frozen
  Struct with forbid_unknown_fields and limits declared in the type (lengths, integer ranges
  that keep every number inside the journal's 64-bit encoding). A frame that does not decode
  is answered 400 VALIDATION_ERROR and the connection carries on.
- Prices and cash are decimal strings, converted exactly (integer arithmetic on the digits,
  never float) to minor units with the currency's number of decimals (its ISO 4217 minor
  units, exchange/currencies.py; any other code is VALIDATION_ERROR), then to ticks. A price
  that is not a whole number of ticks is INVALID_PRICE_INCREMENT; an amount with more decimals
  than its currency has is VALIDATION_ERROR. Quantities are integer units.
- Every exchange rejection code maps to one fixed status (REJECT_STATUS). 5xx means the
  outcome is unknown to the gateway (or, for 503 OVERLOADED, that nothing was done).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from exchange.commands import Role, TradingMode
from exchange.currencies import MINOR_UNITS
from exchange.reasons import Reject
from matching.limits import PRICE_TICKS_MAX, QUANTITY_UNITS_MAX
from matching.orders import OrderType, Side, StpMode, TimeInForce

FRAME_BYTES_MAX = 64 * 1024  # Larger frames close the connection with 1009.
INT64_MAX = (1 << 63) - 1
AMOUNT_MINOR_MAX = 10**15  # As exchange/admin.py: per command.
DECIMAL_DIGITS_MAX = 18

# The decimals of every currency the exchange settles in: the core's own table (ISO 4217),
# so the wire and the journal never disagree on what an amount means.
CURRENCY_DIGITS: Mapping[str, int] = MINOR_UNITS
DEFAULT_CURRENCY_DIGITS = 2  # Only for displays handed no table (gateway/market_data.py).

# \Z, not $: Python's $ also matches before a final newline. (The Meta patterns below keep $
# for the AsyncAPI schemas, whose ECMAScript regexes have no \Z; every Decimal is parsed here.)
_DECIMAL = re.compile(r"^([0-9]{1,18})(?:\.([0-9]{1,18}))?\Z")

# Field types with their limits.
Text = Annotated[str, Meta(max_length=200)]
Identifier = Annotated[str, Meta(min_length=1, max_length=64)]
Symbol = Annotated[str, Meta(min_length=1, max_length=32)]
ClOrdId = Annotated[str, Meta(min_length=1, max_length=36)]
Decimal = Annotated[str, Meta(min_length=1, max_length=40, pattern=r"^[0-9]+(\.[0-9]+)?$")]
Currency = Annotated[str, Meta(min_length=3, max_length=3)]
Quantity = Annotated[int, Meta(ge=1, le=QUANTITY_UNITS_MAX)]
OrderIdField = Annotated[int, Meta(ge=0, le=INT64_MAX)]
NonNegative = Annotated[int, Meta(ge=0, le=INT64_MAX)]
Bps = Annotated[int, Meta(ge=0, le=10_000)]
Date = Annotated[str, Meta(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]


class ProtocolError(Exception):
    """A request refused at the edge, with its wire status and stable code."""

    def __init__(
        self, status: int, code: str, message: str, retry_after_ms: int | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after_ms = retry_after_ms  # Sent with 429 RATE_LIMITED.
        self.request_id: str | None = None  # Set when the frame itself was malformed.


def validation_error(message: str) -> ProtocolError:
    return ProtocolError(400, "VALIDATION_ERROR", message)


class Request(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: Identifier
    method: Annotated[str, Meta(min_length=1, max_length=32)]
    params: msgspec.Raw = msgspec.Raw(b"{}")


class _RequestId(msgspec.Struct):
    # Lenient: only to echo the id of a request that fails the strict decode.
    id: str | None = None


class _Params(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class LogonParams(_Params, frozen=True):
    token: Annotated[str, Meta(min_length=1, max_length=200)]


CancelScope = Literal["session", "account"]


class CancelOnDisconnectParams(_Params, frozen=True):
    enabled: bool
    # "session": the orders this session placed; "account": every order of the account.
    scope: CancelScope = "session"


class PlaceParams(_Params, frozen=True):
    """A new order. A limit order (the default type) needs a price. A market order takes no
    price and must be IOC or FOK (time_in_force "ioc" or "fok": the default "gtc" is refused,
    as are GTD and DAY) and not post-only; it is protected: it never trades beyond the static
    price band's edge (exchange/trading.py)."""

    symbol: Symbol
    cl_ord_id: ClOrdId
    side: Side
    quantity: Quantity
    price: Decimal | None = None  # Required for a limit order; absent for a market order.
    type: OrderType = OrderType.LIMIT
    time_in_force: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    stp_mode: StpMode = StpMode.EXPIRE_TAKER
    expire_ts_ns: NonNegative = 0


class OrderRefParams(_Params, frozen=True):
    """Names one of the caller's orders: by order_id or by cl_ord_id."""

    order_id: OrderIdField = 0
    cl_ord_id: Annotated[str, Meta(max_length=36)] = ""


class AmendParams(_Params, frozen=True):
    price: Decimal
    quantity: Quantity
    order_id: OrderIdField = 0
    cl_ord_id: Annotated[str, Meta(max_length=36)] = ""


class SymbolFilterParams(_Params, frozen=True):
    symbol: Annotated[str, Meta(max_length=32)] = ""


PAGE_LIMIT_DEFAULT = 1_000  # Items in a page unless `limit` says otherwise: ~180 KB of orders.
PAGE_LIMIT_MAX = 10_000


class PageParams(SymbolFilterParams, frozen=True):
    """One page of a list: at most `limit` items after the cursor `after` (0: the first)."""

    limit: Annotated[int, Meta(ge=1, le=PAGE_LIMIT_MAX)] = PAGE_LIMIT_DEFAULT
    after: NonNegative = 0


class NoParams(_Params, frozen=True):
    pass


class BookParams(_Params, frozen=True):
    symbol: Symbol
    depth: Annotated[int, Meta(ge=1, le=1_000)] = 20


class DepositParams(_Params, frozen=True):
    account_id: Identifier
    currency: Currency
    amount: Decimal


class ListAssetParams(_Params, frozen=True):
    patent_id: Symbol
    title: Text
    jurisdiction: Annotated[str, Meta(max_length=8)]
    owner_account: Identifier
    filing_date: Date
    expiry_date: Date
    cpc_class: Annotated[str, Meta(max_length=32)]
    currency: Currency
    # Required, as the core requires them (1 to 200 characters): a default of "" was refused.
    royalty_terms: Annotated[str, Meta(min_length=1, max_length=200)]
    licensees: Annotated[list[Text], Meta(max_length=100)] = []
    trailing_royalties: Decimal = "0"
    family: Annotated[list[Symbol], Meta(max_length=50)] = []  # The family's other patents.


class IssueSharesParams(_Params, frozen=True):
    patent_id: Symbol
    symbol: Symbol
    issuer_account: Identifier
    total_units: Quantity
    currency: Currency
    tick_size: Decimal  # Cash value of one tick per unit, e.g. "0.10".
    reference_price: Decimal
    lot_size_units: Quantity = 1
    maker_fee_bps: Bps = 0
    taker_fee_bps: Bps = 0
    static_band_bps: Bps = 1_000
    dynamic_band_bps: Bps = 500
    volatility_auction_ns: NonNegative = 60_000_000_000
    opening_auction_ns: NonNegative = 30_000_000_000
    trading_mode: TradingMode = TradingMode.CONTINUOUS
    auction_interval_ns: NonNegative = 0


MarketDataChannel = Literal["book.l2", "book.l3", "trades", "ticker", "status", "liquidity"]


class MarketDataParams(_Params, frozen=True):
    symbol: Symbol
    channels: Annotated[list[MarketDataChannel], Meta(min_length=1, max_length=6)]


class SymbolParams(_Params, frozen=True):
    symbol: Symbol


SubscriptionChannel = Literal[
    "executions", "balances", "book.l2", "book.l3", "trades", "ticker", "status", "liquidity"
]


class ChannelParams(_Params, frozen=True):
    channel: SubscriptionChannel
    symbol: Annotated[str, Meta(max_length=32)] = ""  # Required for a market-data channel.


class WithdrawParams(DepositParams, frozen=True):
    pass


class OpenOfferingParams(_Params, frozen=True):
    symbol: Symbol
    units: Quantity
    min_price: Decimal
    end_ts_ns: NonNegative  # When the offering's auction ends (exchange clock, UTC ns).
    all_or_none: bool = False


class DistributeRoyaltyParams(_Params, frozen=True):
    symbol: Symbol
    amount: Decimal  # In the instrument's currency.
    payer_account: Identifier
    period_id: Annotated[str, Meta(min_length=1, max_length=32)]


class KillSwitchParams(_Params, frozen=True):
    account_id: Identifier
    engaged: bool


class AccountCancelAllParams(_Params, frozen=True):
    account_id: Identifier
    symbol: Annotated[str, Meta(max_length=32)] = ""


class StartAuctionParams(_Params, frozen=True):
    symbol: Symbol
    duration_ns: Annotated[int, Meta(ge=1, le=INT64_MAX)]


class OpenAccountParams(_Params, frozen=True):
    account_id: Identifier
    role: Role


# Method name -> parameter type. Operator methods need the operator role at the edge; the core
# checks again (defence in depth).
METHODS: dict[str, type[_Params]] = {
    "session.logon": LogonParams,
    "order.place": PlaceParams,
    "order.cancel": OrderRefParams,
    "order.amend": AmendParams,
    "order.status": OrderRefParams,
    "orders.open": PageParams,
    "account.balances": NoParams,
    "instruments.list": NoParams,
    "book.snapshot": BookParams,
    "order.cancel_all": SymbolFilterParams,
    "account.fills": PageParams,
    "account.royalties": NoParams,
    "instrument.info": SymbolParams,
    "executions.subscribe": NoParams,
    "subscribe": ChannelParams,
    "unsubscribe": ChannelParams,
    "md.subscribe": MarketDataParams,
    "md.unsubscribe": MarketDataParams,
    "session.cancel_on_disconnect": CancelOnDisconnectParams,
    "op.open_account": OpenAccountParams,
    "op.deposit": DepositParams,
    "op.list_asset": ListAssetParams,
    "op.issue_shares": IssueSharesParams,
    "op.withdraw": WithdrawParams,
    "op.open_offering": OpenOfferingParams,
    "op.distribute_royalty": DistributeRoyaltyParams,
    "op.kill_switch": KillSwitchParams,
    "op.cancel_all": AccountCancelAllParams,
    "op.halt": SymbolParams,
    "op.resume": SymbolParams,
    "op.start_auction": StartAuctionParams,
    "op.close_market": SymbolParams,
}
OPERATOR_PREFIX = "op."

_request_decoder = msgspec.json.Decoder(Request)
_request_id_decoder = msgspec.json.Decoder(_RequestId)
_param_decoders = {method: msgspec.json.Decoder(kind) for method, kind in METHODS.items()}
_encoder = msgspec.json.Encoder()


# msgspec raises RecursionError, not DecodeError, for JSON nested deeper than it recurses
# (~1,000 levels, a 2 KB frame): that is malformed input too, not a fault of the server.
_UNDECODABLE = (msgspec.DecodeError, RecursionError)


def decode_request(frame: str | bytes) -> Request:
    """Decode a request frame (its params stay raw until decode_params).

    Raises:
        ProtocolError: 400 VALIDATION_ERROR for anything malformed or an unknown method,
            with the frame's id in `request_id` when one could be read.
    """
    try:
        request = _request_decoder.decode(frame)
    except _UNDECODABLE as exc:
        error = validation_error(f"malformed request: {exc}")
        error.request_id = request_id_of(frame)  # Parsed leniently, only on this path.
        raise error from None
    if request.method not in METHODS:
        error = validation_error(f"unknown method {request.method!r}")
        error.request_id = request.id
        raise error
    return request


def request_id_of(frame: str | bytes) -> str | None:
    """Return the id of a frame that failed to decode, if one can be read at all."""
    try:
        request_id = _request_id_decoder.decode(frame).id
    except (*_UNDECODABLE, TypeError):
        return None
    return request_id if isinstance(request_id, str) and len(request_id) <= 64 else None


def decode_params(request: Request) -> Any:
    """Decode the request's params into the method's parameter type.

    Raises:
        ProtocolError: 400 VALIDATION_ERROR, naming the offending field.
    """
    try:
        return _param_decoders[request.method].decode(request.params)
    except _UNDECODABLE as exc:
        raise validation_error(f"invalid params for {request.method}: {exc}") from None


def encode_result(request_id: str | None, result: Any) -> bytes:
    return _encoder.encode({"id": request_id, "status": 200, "result": result})


def encode_error(
    request_id: str | None,
    status: int,
    code: str,
    message: str,
    retry_after_ms: int | None = None,
) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message}
    if retry_after_ms is not None:
        error["retry_after_ms"] = retry_after_ms
    return _encoder.encode({"id": request_id, "status": status, "error": error})


def encode_push(message: Any) -> bytes:
    return _encoder.encode(message)


# Exact decimals.


def currency_digits(currency: str) -> int:
    """Return the currency's ISO 4217 minor units (its decimals).

    Raises:
        ProtocolError: 400 VALIDATION_ERROR for a code the exchange does not settle in: its
            amounts cannot be converted (a guess of 2 decimals put OMR 10 times off).
    """
    digits = CURRENCY_DIGITS.get(currency)
    if digits is None:
        raise validation_error(
            f"currency {currency!r} is not an ISO 4217 currency the exchange settles in"
        )
    return digits


def _scaled(text: str, digits: int) -> tuple[int, bool]:
    # Return (value * 10**digits truncated, exact?) by integer arithmetic on the digits.
    match = _DECIMAL.match(text)
    if match is None:
        raise validation_error(
            f"{text!r} is not a decimal number (digits, optionally a point and "
            f"up to {DECIMAL_DIGITS_MAX} more digits)"
        )
    whole, fraction = match.group(1), match.group(2) or ""
    kept, dropped = fraction[:digits], fraction[digits:]
    value = int(whole) * 10**digits + int(kept.ljust(digits, "0") or "0")
    return value, dropped.strip("0") == ""


def amount_to_minor(text: str, currency: str, what: str = "amount") -> int:
    """Convert a cash amount like "1234.50" to minor units of currency, exactly.

    Raises:
        ProtocolError: 400 VALIDATION_ERROR when it is not a decimal, has more decimals than
            the currency, or exceeds AMOUNT_MINOR_MAX.
    """
    digits = currency_digits(currency)
    value, exact = _scaled(text, digits)
    if not exact:
        raise validation_error(f"{what} {text} has more than {digits} decimals for {currency}")
    if value > AMOUNT_MINOR_MAX:
        raise validation_error(f"{what} {text} is above the limit of one command")
    return value


def minor_to_amount(minor: int, currency: str) -> str:
    """Format minor units as a decimal string with the currency's decimals."""
    digits = currency_digits(currency)
    sign = "-" if minor < 0 else ""
    whole, fraction = divmod(abs(minor), 10**digits)
    return f"{sign}{whole}.{fraction:0{digits}d}" if digits else f"{sign}{whole}"


# Prices repeat (a few hundred levels carry most orders): both conversions are memoized, and
# the caches are bounded so that prices a client makes up cannot grow them.
PRICE_CACHE_MAX = 4096


@functools.lru_cache(maxsize=PRICE_CACHE_MAX)
def price_to_ticks(text: str, currency: str, tick_size_minor: int) -> int:
    """Convert a price per unit like "100.10" to ticks, exactly.

    Raises:
        ProtocolError: 400 INVALID_PRICE_INCREMENT when the price is not a whole number of
            ticks; 400 VALIDATION_ERROR when it is not a decimal or is out of range.
    """
    digits = currency_digits(currency)
    minor, exact = _scaled(text, digits)
    if not exact or minor % tick_size_minor:
        tick = minor_to_amount(tick_size_minor, currency)
        raise ProtocolError(
            400,
            Reject.INVALID_PRICE_INCREMENT.value,
            f"price {text} is not a multiple of the tick {tick}",
        )
    ticks = minor // tick_size_minor
    if ticks > PRICE_TICKS_MAX:
        raise validation_error(f"price {text} is above the highest price of any book")
    return ticks


@functools.lru_cache(maxsize=PRICE_CACHE_MAX)
def ticks_to_price(ticks: int, currency: str, tick_size_minor: int) -> str:
    return minor_to_amount(ticks * tick_size_minor, currency)


# Rejections to statuses.

REJECT_STATUS: dict[Reject, int] = {
    Reject.VALIDATION_ERROR: 400,
    Reject.INVALID_PRICE_INCREMENT: 400,
    Reject.INVALID_QUANTITY: 400,
    Reject.FORBIDDEN: 403,
    Reject.ACCOUNT_SUSPENDED: 403,
    Reject.UNKNOWN_ACCOUNT: 404,
    Reject.UNKNOWN_ASSET: 404,
    Reject.UNKNOWN_SYMBOL: 404,
    Reject.UNKNOWN_ORDER: 404,
    Reject.ALREADY_EXISTS: 409,
    Reject.DUPLICATE_CL_ORD_ID: 409,
    Reject.DUPLICATE_DISTRIBUTION: 409,
    Reject.TOO_LATE_TO_CANCEL: 409,
    Reject.MARKET_CLOSED: 422,
    Reject.TRADING_HALTED: 422,
    Reject.NOT_ALLOWED_IN_AUCTION: 422,
    Reject.ASSET_EXPIRED: 422,
    Reject.INSUFFICIENT_BALANCE: 422,
    Reject.INSUFFICIENT_SHARES: 422,
    Reject.PRICE_BAND: 422,
    Reject.POST_ONLY_WOULD_TRADE: 422,
    Reject.FOK_NOT_FILLABLE: 422,
    Reject.LIMIT_EXCEEDED: 422,
}


def rejection(reason: Reject, message: str) -> ProtocolError:
    return ProtocolError(REJECT_STATUS[reason], reason.value, message)


def unauthorized(message: str) -> ProtocolError:
    return ProtocolError(401, "UNAUTHORIZED", message)


def forbidden(message: str) -> ProtocolError:
    return ProtocolError(403, "FORBIDDEN", message)
