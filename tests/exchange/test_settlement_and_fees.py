"""The rulebook of settlement: delivery versus payment, fees, and what a trade gives back.

Every trade settles in the record of the command that caused it: units from the seller's held
balance to the buyer, cash from the buyer's held balance to the seller, each side's fee to the
fee account, and the buyer's now-unneeded reservation back to available. The fee account is
the venue's own: nobody trades from it or deposits to it, and an operator withdraws the fees.

The seeded random session at the end replays with IPX_SEED=<seed> (printed on every run);
IPX_EXCHANGE_STEPS sets its length.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import pytest

from exchange.commands import (
    AmendOrder,
    CancelAll,
    CancelOrder,
    Command,
    Deposit,
    DistributeRoyalty,
    Halt,
    OpenAccount,
    PlaceOrder,
    Resume,
    Role,
    StartAuction,
    Withdraw,
)
from exchange.events import CashWithdrawn, Liquidity, OrderFilled, Phase, TradeExecuted
from exchange.reasons import Reject
from ledger.records import BANK_ACCOUNT, Bucket, Posting
from matching.orders import StpMode
from tests.exchange import rulebook
from tests.exchange.rulebook import (
    BUY,
    CASH,
    DAY,
    FEES,
    FOK,
    GTC,
    GTD,
    HOUR,
    INVESTORS,
    IOC,
    ISSUER,
    LICENSEE,
    LIMIT,
    MAKER_BPS,
    MARKET,
    OPERATOR,
    REFERENCE,
    SECOND,
    SELL,
    SYMBOL,
    TAKER_BPS,
    USD,
    Market,
    buy_need,
    events,
    fee,
)

AVAILABLE = Bucket.AVAILABLE
HELD = Bucket.HELD


@pytest.fixture
def market() -> Iterator[Market]:
    yield from rulebook.checked_market()


def test_a_trade_settles_units_cash_and_fees_in_the_record_of_its_command(
    market: Market,
) -> None:
    market.trading()
    market.rest(ISSUER, SELL, 10, 1_000)
    outcome = market.buy("alice", 10, 1_000)
    assert outcome.record.postings == (
        Posting(USD, 100_250, "alice", AVAILABLE, "alice", HELD),  # The reservation.
        Posting(SYMBOL, 10, ISSUER, HELD, "alice", AVAILABLE),  # Delivery...
        Posting(USD, 100_000, "alice", HELD, ISSUER, AVAILABLE),  # ...versus payment.
        Posting(USD, 250, "alice", HELD, FEES, AVAILABLE),  # Taker fee, 25 bps.
        Posting(USD, 100, ISSUER, AVAILABLE, FEES, AVAILABLE),  # Maker fee, 10 bps.
    )
    assert market.units("alice") == (10, 0)
    assert market.cash("alice") == (CASH - 100_250, 0)
    assert market.cash(ISSUER) == (99_900, 0)
    assert market.cash(FEES) == (350, 0)


def test_a_trade_prints_at_the_makers_price(market: Market) -> None:
    market.trading()
    market.rest(ISSUER, SELL, 10, 990)
    outcome = market.buy("alice", 10, 1_020)
    assert [trade.price_ticks for trade in events(outcome, TradeExecuted)] == [990]


def test_fees_are_basis_points_of_the_notional_rounded_down(market: Market) -> None:
    market.trading()
    market.rest(ISSUER, SELL, 3, 1_001)
    outcome = market.buy("alice", 3, 1_001)
    notional = 1_001 * 10 * 3  # 30,030.
    fills = {fill.side: fill for fill in events(outcome, OrderFilled)}
    assert fills[BUY].fee_minor == 75  # 75.075 rounded down.
    assert fills[SELL].fee_minor == 30  # 30.03 rounded down.
    assert (fills[BUY].liquidity, fills[SELL].liquidity) == (Liquidity.TAKER, Liquidity.MAKER)
    assert market.cash("alice") == (CASH - notional - 75, 0)
    assert market.cash(ISSUER) == (notional - 30, 0)
    assert market.cash(FEES) == (105, 0)


def test_each_fill_of_a_sweep_pays_its_own_fee_rounded_down(market: Market) -> None:
    market.trading()
    market.give_units("bob", 5)
    fees_before = market.cash(FEES)[0]
    market.rest(ISSUER, SELL, 5, 1_000)
    market.rest("bob", SELL, 5, 1_010)
    outcome = market.buy("alice", 10, 1_020)
    fills = [fill for fill in events(outcome, OrderFilled) if fill.account == "alice"]
    assert [(fill.price_ticks, fill.fee_minor) for fill in fills] == [(1_000, 125), (1_010, 126)]
    paid = 1_000 * 10 * 5 + 1_010 * 10 * 5 + 125 + 126
    assert market.cash("alice") == (CASH - paid, 0)
    maker_fees = fee(1_000, 5, MAKER_BPS) + fee(1_010, 5, MAKER_BPS)
    assert market.cash(FEES)[0] - fees_before == 125 + 126 + maker_fees


def test_a_buy_filled_at_a_better_price_gets_its_unspent_reservation_back(
    market: Market,
) -> None:
    market.trading()
    market.rest(ISSUER, SELL, 10, 1_000)
    outcome = market.buy("alice", 10, 1_050)
    unspent = buy_need(1_050, 10) - 100_000 - 250  # 105,262 - 100,250.
    assert outcome.record.postings[-1] == Posting(USD, unspent, "alice", HELD, "alice", AVAILABLE)
    assert market.cash("alice") == (CASH - 100_250, 0)


def test_a_resting_buy_filled_as_maker_pays_the_maker_fee_and_gets_the_difference_back(
    market: Market,
) -> None:
    market.trading()
    market.rest("alice", BUY, 3, 1_001)
    outcome = market.sell(ISSUER, 3, 1_001)
    notional = 30_030
    maker_fee = 30  # Reserved at the taker rate (75), charged at the maker rate.
    assert Posting(USD, 75 - maker_fee, "alice", HELD, "alice", AVAILABLE) in (
        outcome.record.postings
    )
    assert market.cash("alice") == (CASH - notional - maker_fee, 0)
    assert market.cash(ISSUER) == (notional - 75, 0)


def test_a_partial_fill_keeps_exactly_the_leaves_reserved(market: Market) -> None:
    market.trading()
    market.rest(ISSUER, SELL, 4, 1_000)
    market.buy("alice", 10, 1_000)
    assert market.cash("alice") == (CASH - 40_100 - buy_need(1_000, 6), buy_need(1_000, 6))
    assert market.units(ISSUER)[1] == 0


def test_the_seller_receives_the_notional_less_its_fee(market: Market) -> None:
    market.trading()
    market.give_units("alice", 10)
    cash_before = market.cash("alice")[0]
    market.rest("bob", BUY, 10, 1_000)
    market.sell("alice", 10, 1_000)
    assert market.cash("alice")[0] - cash_before == 100_000 - fee(1_000, 10, TAKER_BPS)
    assert market.units("alice") == (0, 0)


def test_a_fee_free_instrument_posts_no_fees(market: Market) -> None:
    market.trading(maker_fee_bps=0, taker_fee_bps=0)
    market.rest(ISSUER, SELL, 10, 1_000)
    outcome = market.buy("alice", 10, 1_000)
    assert [posting.credit_account for posting in outcome.record.postings].count(FEES) == 0
    assert market.cash(FEES) == (0, 0)


def test_the_fee_account_receives_exactly_the_fees_of_every_fill(market: Market) -> None:
    market.trading()
    charged = 0
    for account, units, price in (("alice", 7, 1_003), ("bob", 13, 997), ("carol", 1, 1_011)):
        market.rest(ISSUER, SELL, units, price)
        outcome = market.buy(account, units, price + 2)
        charged += sum(fill.fee_minor for fill in events(outcome, OrderFilled))
    market.rest("dave", BUY, 9, 1_001)
    outcome = market.sell("alice", 5, 999)
    charged += sum(fill.fee_minor for fill in events(outcome, OrderFilled))
    assert charged > 0
    assert market.cash(FEES) == (charged, 0)


def test_an_operator_withdraws_the_collected_fees_like_any_cash(market: Market) -> None:
    # The fees are the venue's revenue: kept in the fee account, which no command could move
    # them out of, they were locked in for good. They leave through the bank like any
    # withdrawal, and no more than was collected.
    market.trading()
    market.give_units("alice", 100)
    collected = market.cash(FEES)[0]
    assert collected == fee(REFERENCE, 100, MAKER_BPS) + fee(REFERENCE, 100, TAKER_BPS)
    market.refused(Withdraw(OPERATOR, FEES, USD, collected + 1), Reject.INSUFFICIENT_BALANCE)
    outcome = market.do(Withdraw(OPERATOR, FEES, USD, collected))
    assert outcome.reply == CashWithdrawn(FEES, USD, collected)
    assert outcome.record.postings == (
        Posting(USD, collected, FEES, AVAILABLE, BANK_ACCOUNT, AVAILABLE),
    )
    assert market.cash(FEES) == (0, 0)


def test_the_fee_account_is_the_venues_own_and_never_a_trading_account(market: Market) -> None:
    market.trading()
    market.give_units("alice", 100)
    market.refused(Withdraw("alice", FEES, USD, 1), Reject.FORBIDDEN)
    market.refused(Deposit(OPERATOR, FEES, USD, 1), Reject.UNKNOWN_ACCOUNT)
    market.refused(OpenAccount(OPERATOR, FEES, Role.INVESTOR), Reject.ALREADY_EXISTS)
    market.refused(market.order(FEES, BUY, 1, REFERENCE), Reject.FORBIDDEN)


# A seeded random session: whatever happens, the invariants of rulebook.Market hold after
# every command, no trade has one owner on both sides, and the journal replays.


def _base_seed() -> int:
    configured = os.environ.get("IPX_SEED")
    return int(configured) if configured else random.SystemRandom().randrange(1 << 32)


BASE_SEED = _base_seed()
STEPS = int(os.environ.get("IPX_EXCHANGE_STEPS", "400"))


def _random_command(market: Market, rng: random.Random) -> Command | None:
    accounts = (*INVESTORS, ISSUER)
    account = rng.choice(accounts)
    roll = rng.random()
    reference = market.instrument().reference_price_ticks
    if roll < 0.55:
        order_type = MARKET if rng.random() < 0.1 else LIMIT
        tif = rng.choice((IOC, FOK) if order_type is MARKET else (GTC, GTC, IOC, FOK, DAY, GTD))
        price = 0 if order_type is MARKET else reference + rng.randint(-12, 12) * reference // 100
        expiry = market.ts_ns + rng.randint(1, 600) * SECOND if tif is GTD else 0
        side = rng.choice((BUY, SELL))
        post_only = tif in (GTC, DAY, GTD) and rng.random() < 0.1
        stp = rng.choice(tuple(StpMode))
        return market.order(
            account,
            side,
            rng.randint(1, 60),
            price,
            order_type=order_type,
            tif=tif,
            post_only=post_only,
            stp=stp,
            expire_ts_ns=expiry,
        )
    open_ids = market.open_orders(account)
    if roll < 0.75:
        return CancelOrder(account, rng.choice(open_ids)) if open_ids else None
    if roll < 0.88:
        if not open_ids:
            return None
        order = market.exchange.state.orders[rng.choice(open_ids)]
        quantity = max(1, order.quantity_units + rng.randint(-20, 20))
        return AmendOrder(
            account, order.price_ticks + rng.randint(-20, 20), quantity, order.order_id
        )
    if roll < 0.89:
        return CancelAll(OPERATOR if rng.random() < 0.5 else account, account)
    if roll < 0.91 or market.phase() is Phase.HALTED:
        return rng.choice(
            (
                Halt(OPERATOR, SYMBOL),
                Resume(OPERATOR, SYMBOL),
                Resume(OPERATOR, SYMBOL),
                StartAuction(OPERATOR, SYMBOL, rng.randint(1, 120) * SECOND),
            )
        )
    if roll < 0.92:
        period = f"p{market.exchange.seq}"
        return DistributeRoyalty(OPERATOR, SYMBOL, rng.randint(1, 100_000), LICENSEE, period)
    return None  # Let time pass.


def _run_session(seed: int, steps: int) -> None:
    rng = random.Random(seed)
    market = Market()
    market.trading()
    for account in INVESTORS:
        market.give_units(account, 500)
    for _ in range(steps):
        command = _random_command(market, rng)
        if command is None:
            outcome = market.tick(rng.choice((SECOND, 30 * SECOND, 10 * 60 * SECOND, 13 * HOUR)))
        else:
            outcome = market.do(command, rng.randint(1, 5 * SECOND))
        by_trade: dict[int, set[str]] = {}
        for fill in events(outcome, OrderFilled):
            by_trade.setdefault(fill.trade_id, set()).add(fill.account)
        assert all(len(owners) == 2 for owners in by_trade.values()), "a self-trade"
        if isinstance(command, PlaceOrder) and market.phase() is Phase.HALTED:
            assert not events(outcome, TradeExecuted)
    market.check()
    market.replay_check()


@pytest.mark.parametrize("offset", range(3))
def test_a_random_session_conserves_cash_and_units_and_replays(offset: int) -> None:
    seed = BASE_SEED + offset
    print(f"exchange random session: IPX_SEED={BASE_SEED} run seed={seed} steps={STEPS}")
    _run_session(seed, STEPS)
