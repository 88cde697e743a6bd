"""The whole exchange state as one canonical value: for snapshots and for `state_hash()`.

Invariants:
- `encode_state` writes every piece of state, in the order the exchange iterates it
  (insertion order of accounts, instruments and orders; priority order within books), with
  one msgpack encoder and no maps, so equal histories give equal bytes in any process.
- `decode_state(encode_state(x))` rebuilds an exchange whose next commands behave exactly as
  x's would: restoring a snapshot and replaying the tail equals replaying from genesis.
- `state_hash` is sha256 of those bytes.
"""

from __future__ import annotations

import hashlib

import msgspec

from exchange.commands import IssueShares, ListAsset, OpenOffering, PlaceOrder, Role
from exchange.events import Event, OrderFilled, Phase, TradeExecuted
from exchange.state import (
    Account,
    Asset,
    ClientOrder,
    ExchangeState,
    GatewaySession,
    Instrument,
    LiveOrder,
    RoyaltyPeriod,
    count_orders_today,
)
from ledger.balances import Balances
from matching.book import OrderBook
from matching.orders import OrderType, Side, TimeInForce
from matching.views import OrderView

# 2: accounts' execution_seq, rejected order ids, arrival fills. 3: sessions. 4: yesterday's
# finished, client and rejected orders. 5: instruments' phase reason, last uncross and recent
# trades (market data's status and trades snapshots after a restart). Another version's
# snapshot is refused (ValueError) and recovery replays the journal from genesis instead: an
# older one lacks state that replay rebuilds, so restoring it would not equal the full replay.
SNAPSHOT_VERSION = 5


class _Row(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    pass


class AccountRow(_Row, frozen=True):
    account_id: str
    role: Role
    suspended: bool
    open_orders: list[int]
    execution_seq: int


class AssetRow(_Row, frozen=True):
    listing: ListAsset
    expiry_ts_ns: int
    symbols: list[str]


class RoyaltyRow(_Row, frozen=True):
    period_id: str
    seq: int
    ts_ns: int
    amount_minor: int
    total_units: int
    payer_account: str
    payments: list[tuple[str, int, int]]


class InstrumentRow(_Row, frozen=True):
    terms: IssueShares
    phase: Phase
    phase_until_ns: int
    reference_price_ticks: int
    last_price_ticks: int
    offering: OpenOffering | None
    offering_order_id: int
    indicative: tuple[int, int, int]
    holders: list[str]
    royalties: list[RoyaltyRow]
    trade_count: int
    volume_units: int
    in_auction: bool
    next_trade_id: int
    bids: list[OrderView]
    asks: list[OrderView]
    phase_reason: str
    last_uncross: tuple[int, int]
    recent_trades: list[TradeExecuted]


class OrderRow(_Row, frozen=True):
    order_id: int
    account: str
    symbol: str
    cl_ord_id: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    price_ticks: int
    quantity_units: int
    cum_units: int


class ClientOrderRow(_Row, frozen=True):
    account: str
    cl_ord_id: str
    command: PlaceOrder
    order_id: int
    reply: Event
    fills: list[OrderFilled]


class SessionRow(_Row, frozen=True):
    session_id: str
    account: str
    cancel_scope: str
    open_orders: list[int]


class StateRow(_Row, frozen=True):
    version: int
    seq: int
    last_ts_ns: int
    trading_day: int
    next_order_id: int
    accounts: list[AccountRow]
    assets: list[AssetRow]
    instruments: list[InstrumentRow]
    orders: list[OrderRow]
    finished_orders: list[OrderRow]
    client_orders: list[ClientOrderRow]
    rejected_orders: list[tuple[int, str, str]]  # (order_id, account, cl_ord_id)
    finished_orders_yesterday: list[OrderRow]
    client_orders_yesterday: list[ClientOrderRow]
    rejected_orders_yesterday: list[tuple[int, str, str]]
    sessions: list[SessionRow]
    balances: bytes


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(StateRow)


def _order_row(order: LiveOrder) -> OrderRow:
    return OrderRow(
        order.order_id,
        order.account,
        order.instrument.terms.symbol,
        order.cl_ord_id,
        order.side,
        order.order_type,
        order.time_in_force,
        order.price_ticks,
        order.quantity_units,
        order.cum_units,
    )


def _instrument_row(instrument: Instrument) -> InstrumentRow:
    book = instrument.book
    bids, asks = book.l3()
    royalties = [
        RoyaltyRow(
            period.period_id,
            period.seq,
            period.ts_ns,
            period.amount_minor,
            period.total_units,
            period.payer_account,
            [(account, units, amount) for account, (units, amount) in period.payments.items()],
        )
        for period in instrument.royalties.values()
    ]
    return InstrumentRow(
        instrument.terms,
        instrument.phase,
        instrument.phase_until_ns,
        instrument.reference_price_ticks,
        instrument.last_price_ticks,
        instrument.offering,
        instrument.offering_order_id,
        instrument.indicative,
        list(instrument.holders),
        royalties,
        instrument.trade_count,
        instrument.volume_units,
        book.in_auction,
        book.next_trade_id,
        bids,
        asks,
        instrument.phase_reason,
        instrument.last_uncross,
        list(instrument.recent_trades),
    )


def _client_order_rows(client_orders: dict[tuple[str, str], ClientOrder]) -> list[ClientOrderRow]:
    return [
        ClientOrderRow(
            account, cl_ord_id, client.command, client.order_id, client.reply, list(client.fills)
        )
        for (account, cl_ord_id), client in client_orders.items()
    ]


def _rejected_rows(rejected_orders: dict[int, tuple[str, str]]) -> list[tuple[int, str, str]]:
    return [
        (order_id, account, cl_ord_id) for order_id, (account, cl_ord_id) in rejected_orders.items()
    ]


def encode_state(state: ExchangeState, balances: Balances) -> bytes:
    """Return the canonical bytes of the whole exchange state."""
    row = StateRow(
        SNAPSHOT_VERSION,
        state.seq,
        state.last_ts_ns,
        state.trading_day,
        state.next_order_id,
        [
            AccountRow(
                account.account_id,
                account.role,
                account.suspended,
                list(account.open_orders),
                account.execution_seq,
            )
            for account in state.accounts.values()
        ],
        [
            AssetRow(asset.listing, asset.expiry_ts_ns, list(asset.symbols))
            for asset in state.assets.values()
        ],
        [_instrument_row(instrument) for instrument in state.instruments.values()],
        [_order_row(order) for order in state.orders.values()],
        [_order_row(order) for order in state.finished_orders.values()],
        _client_order_rows(state.client_orders),
        _rejected_rows(state.rejected_orders),
        [_order_row(order) for order in state.finished_orders_yesterday.values()],
        _client_order_rows(state.client_orders_yesterday),
        _rejected_rows(state.rejected_orders_yesterday),
        [
            SessionRow(session_id, session.account, session.cancel_scope, list(session.open_orders))
            for session_id, session in state.sessions.items()
        ],
        balances.to_bytes(),
    )
    return _encoder.encode(row)


def state_hash(state: ExchangeState, balances: Balances) -> bytes:
    """Return sha256 of the canonical state bytes."""
    return hashlib.sha256(encode_state(state, balances)).digest()


def _restore_instrument(row: InstrumentRow, asset: Asset) -> Instrument:
    instrument = Instrument(row.terms, asset)
    instrument.book = OrderBook.restore(row.in_auction, row.next_trade_id, row.bids, row.asks)
    instrument.phase = row.phase
    instrument.phase_reason = row.phase_reason
    instrument.phase_until_ns = row.phase_until_ns
    instrument.last_uncross = row.last_uncross
    instrument.recent_trades.extend(row.recent_trades)
    instrument.last_price_ticks = row.last_price_ticks
    instrument.set_reference_price(row.reference_price_ticks)
    if row.last_price_ticks:
        instrument.set_last_price(row.last_price_ticks)
    instrument.offering = row.offering
    instrument.offering_order_id = row.offering_order_id
    instrument.indicative = row.indicative
    instrument.holders = dict.fromkeys(row.holders)
    for royalty in row.royalties:
        period = RoyaltyPeriod(
            royalty.period_id,
            royalty.seq,
            royalty.ts_ns,
            royalty.amount_minor,
            royalty.total_units,
            royalty.payer_account,
        )
        period.payments = {account: (units, amount) for account, units, amount in royalty.payments}
        instrument.royalties[royalty.period_id] = period
    instrument.trade_count = row.trade_count
    instrument.volume_units = row.volume_units
    return instrument


def _restore_order(row: OrderRow, instruments: dict[str, Instrument]) -> LiveOrder:
    order = LiveOrder(
        row.order_id,
        row.account,
        instruments[row.symbol],
        row.cl_ord_id,
        row.side,
        row.order_type,
        row.time_in_force,
        row.price_ticks,
        row.quantity_units,
    )
    order.cum_units = row.cum_units
    return order


def _restore_orders(
    rows: list[OrderRow], instruments: dict[str, Instrument]
) -> dict[int, LiveOrder]:
    return {row.order_id: _restore_order(row, instruments) for row in rows}


def _restore_client_orders(rows: list[ClientOrderRow]) -> dict[tuple[str, str], ClientOrder]:
    return {
        (row.account, row.cl_ord_id): ClientOrder(
            row.command, row.order_id, row.reply, tuple(row.fills)
        )
        for row in rows
    }


def _restore_rejected(rows: list[tuple[int, str, str]]) -> dict[int, tuple[str, str]]:
    return {order_id: (account, cl_ord_id) for order_id, account, cl_ord_id in rows}


def decode_state(data: bytes) -> tuple[ExchangeState, Balances]:
    """Rebuild the exchange state and balances from encode_state's bytes."""
    row = _decoder.decode(data)
    if row.version != SNAPSHOT_VERSION:
        raise ValueError(f"snapshot version {row.version} is not {SNAPSHOT_VERSION}")
    state = ExchangeState()
    state.seq = row.seq
    state.last_ts_ns = row.last_ts_ns
    state.trading_day = row.trading_day
    state.next_order_id = row.next_order_id
    for account_row in row.accounts:
        account = Account(account_row.account_id, account_row.role)
        account.suspended = account_row.suspended
        account.open_orders = dict.fromkeys(account_row.open_orders)
        account.execution_seq = account_row.execution_seq
        state.accounts[account.account_id] = account
    for asset_row in row.assets:
        asset = Asset(asset_row.listing, asset_row.expiry_ts_ns)
        asset.symbols = list(asset_row.symbols)
        state.assets[asset_row.listing.patent_id] = asset
    for instrument_row in row.instruments:
        asset = state.assets[instrument_row.terms.patent_id]
        state.instruments[instrument_row.terms.symbol] = _restore_instrument(instrument_row, asset)
    for order_row in row.orders:
        state.orders[order_row.order_id] = _restore_order(order_row, state.instruments)
    instruments = state.instruments
    state.finished_orders = _restore_orders(row.finished_orders, instruments)
    state.client_orders = _restore_client_orders(row.client_orders)
    count_orders_today(state)
    state.rejected_orders = _restore_rejected(row.rejected_orders)
    state.finished_orders_yesterday = _restore_orders(row.finished_orders_yesterday, instruments)
    state.client_orders_yesterday = _restore_client_orders(row.client_orders_yesterday)
    state.rejected_orders_yesterday = _restore_rejected(row.rejected_orders_yesterday)
    for session_row in row.sessions:
        state.sessions[session_row.session_id] = GatewaySession(
            session_row.account, session_row.cancel_scope, dict.fromkeys(session_row.open_orders)
        )
        for order_id in session_row.open_orders:
            state.order_sessions[order_id] = session_row.session_id
    return state, Balances.from_bytes(row.balances)
