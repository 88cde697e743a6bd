"""Balances under random transfers, reservations and releases, against a naive model.

Whatever happens: value is conserved (every posting is balanced, so each asset sums to 0 over
all accounts, and what internal accounts hold equals what came in from the world), no internal
balance is ever negative, and a rejected operation changes nothing at all.

Replay: the seed is printed; run again with IPX_TEST_SEED=<seed> to get the same examples.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

from hypothesis import HealthCheck, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from ledger.balances import Balances
from ledger.errors import PostingRejected
from ledger.records import BANK_ACCOUNT, ISSUANCE_ACCOUNT, WORLD_PREFIX, Bucket, Posting

SEED = int(os.environ.get("IPX_TEST_SEED") or secrets.randbits(32))
EXAMPLES_MAX = int(os.environ.get("IPX_BALANCE_EXAMPLES", "200"))
STEPS_MAX = 50

INTERNAL = ("alice", "bob", "carol")
ACCOUNTS = (*INTERNAL, BANK_ACCOUNT, ISSUANCE_ACCOUNT)
CASH = ("USD", "EUR")
UNITS = ("RS-1", "RS-2")
ASSETS = CASH + UNITS

accounts = st.sampled_from(ACCOUNTS)
internal_accounts = st.sampled_from(INTERNAL)
assets = st.sampled_from(ASSETS)
buckets = st.sampled_from((Bucket.AVAILABLE, Bucket.HELD))
# Mostly sensible amounts; about one draw in six is invalid (0, negative or a bool).
amounts: st.SearchStrategy[Any] = st.tuples(
    st.integers(0, 5), st.integers(1, 1_000), st.sampled_from((0, -1, -300, True))
).map(lambda drawn: drawn[1] if drawn[0] else drawn[2])
percents = st.integers(0, 120)
postings = st.builds(Posting, assets, amounts, accounts, buckets, accounts, buckets)

Key = tuple[str, str, Bucket]
counters = {"examples": 0, "steps": 0, "applied": 0, "rejected": 0, "trades": 0}


def model_apply(model: dict[Key, int], batch: list[Posting]) -> dict[Key, int] | None:
    """The rules spelled out naively: return the new model, or None if the batch is rejected."""
    after = dict(model)
    for posting in batch:
        if type(posting.amount) is not int or posting.amount <= 0:
            return None
        debit = (posting.debit_account, posting.asset, posting.debit_bucket)
        credit = (posting.credit_account, posting.asset, posting.credit_bucket)
        if debit == credit:
            return None
        for account, _, bucket in (debit, credit):
            if account.startswith(WORLD_PREFIX) and bucket is Bucket.HELD:
                return None
        after[debit] = after.get(debit, 0) - posting.amount
        after[credit] = after.get(credit, 0) + posting.amount
    for (account, _, _), value in after.items():
        if value < 0 and not account.startswith(WORLD_PREFIX):
            return None
    return after


class BalancesMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.balances = Balances()
        self.model: dict[Key, int] = {}
        counters["examples"] += 1

    def attempt(self, batch: list[Posting]) -> None:
        counters["steps"] += 1
        expected = model_apply(self.model, batch)
        before = self.balances.to_bytes()
        try:
            self.balances.apply(batch)
        except PostingRejected:
            assert expected is None, f"rejected a valid batch {batch}"
            assert self.balances.to_bytes() == before, "a rejected batch changed the balances"
            counters["rejected"] += 1
            return
        assert expected is not None, f"accepted an invalid batch {batch}"
        self.model = expected
        counters["applied"] += 1

    @rule(account=internal_accounts, asset=st.sampled_from(CASH), amount=amounts)
    def deposit(self, account: str, asset: str, amount: int) -> None:
        self.attempt(
            [Posting(asset, amount, BANK_ACCOUNT, Bucket.AVAILABLE, account, Bucket.AVAILABLE)]
        )

    @precondition(lambda self: self.funded(CASH))
    @rule(data=st.data(), percent=percents)
    def withdraw(self, data: st.DataObject, percent: int) -> None:
        account, asset, bucket = data.draw(st.sampled_from(self.funded(CASH)))
        amount = self.portion(account, asset, bucket, percent)
        self.attempt([Posting(asset, amount, account, bucket, BANK_ACCOUNT, Bucket.AVAILABLE)])

    @rule(account=internal_accounts, asset=st.sampled_from(UNITS), amount=amounts)
    def issue(self, account: str, asset: str, amount: int) -> None:
        self.attempt(
            [Posting(asset, amount, ISSUANCE_ACCOUNT, Bucket.AVAILABLE, account, Bucket.AVAILABLE)]
        )

    @precondition(lambda self: self.funded())
    @rule(data=st.data(), recipient=internal_accounts, percent=percents, recipient_bucket=buckets)
    def transfer(
        self, data: st.DataObject, recipient: str, percent: int, recipient_bucket: Bucket
    ) -> None:
        # Covers payments, reservations (own available to held), releases and trade legs.
        source, asset, source_bucket = data.draw(st.sampled_from(self.funded()))
        amount = self.portion(source, asset, source_bucket, percent)
        self.attempt([Posting(asset, amount, source, source_bucket, recipient, recipient_bucket)])

    def funded(self, among: tuple[str, ...] = ASSETS) -> list[Key]:
        return sorted(
            (
                key
                for key, value in self.model.items()
                if value > 0 and key[0] in INTERNAL and key[1] in among
            ),
            key=lambda key: (key[0], key[1], key[2].value),
        )

    def portion(self, account: str, asset: str, bucket: Bucket, percent: int) -> int:
        # Up to 120% of what is there, so about one in six tries asks for too much.
        return self.model.get((account, asset, bucket), 0) * percent // 100

    @precondition(lambda self: self.funded(CASH) and self.funded(UNITS))
    @rule(data=st.data(), cash_percent=percents, units_percent=percents)
    def settle_trade(self, data: st.DataObject, cash_percent: int, units_percent: int) -> None:
        # A trade's cash leg and unit leg, in one batch: both happen or neither does.
        buyer, cash, cash_bucket = data.draw(st.sampled_from(self.funded(CASH)))
        seller, units, units_bucket = data.draw(st.sampled_from(self.funded(UNITS)))
        self.attempt(
            [
                Posting(
                    cash,
                    self.portion(buyer, cash, cash_bucket, cash_percent),
                    buyer,
                    cash_bucket,
                    seller,
                    Bucket.AVAILABLE,
                ),
                Posting(
                    units,
                    self.portion(seller, units, units_bucket, units_percent),
                    seller,
                    units_bucket,
                    buyer,
                    Bucket.AVAILABLE,
                ),
            ]
        )

    @rule(
        data=st.data(),
        fee_account=st.sampled_from((*INTERNAL, "exchange:fees", BANK_ACCOUNT)),
        percents=st.tuples(percents, percents),
        fees=st.tuples(st.integers(-1, 30), st.integers(-1, 30), st.integers(-1, 60)),
    )
    def settle_trade_fast_path(
        self,
        data: st.DataObject,
        fee_account: str,
        percents: tuple[int, int],
        fees: tuple[int, int, int],
    ) -> None:
        # Mostly a real trade: a seller and a buyer hold what they trade (reserved here first
        # if it is available, as an order reserves before it trades), with fees that what
        # they hold can pay, so it settles unless the fee account is a party; sometimes
        # anyone with any amount and any fees (mostly refused).
        buyer_fee, seller_fee, unspent = fees
        sellers, buyers = self.funded(UNITS), self.funded(CASH)
        if sellers and buyers and data.draw(st.integers(0, 3)) > 0:
            seller, units_asset, bucket = data.draw(st.sampled_from(sellers))
            units = self.held(seller, units_asset, bucket, percents[0])
            buyer, cash, bucket = data.draw(st.sampled_from(buyers))
            cash_held = self.held(buyer, cash, bucket, 100)  # What the buyer's order reserved.
            notional = max(1, cash_held * percents[1] * 3 // 400)
            buyer_fee = min(max(buyer_fee, 0), cash_held - notional)
            unspent = min(max(unspent, 0), cash_held - notional - buyer_fee)
            seller_cash = self.model.get((seller, cash, Bucket.AVAILABLE), 0)
            seller_fee = min(max(seller_fee, 0), seller_cash) if seller != buyer else 0
        else:
            seller, buyer = data.draw(accounts), data.draw(accounts)
            cash, units_asset = data.draw(st.sampled_from(CASH)), data.draw(st.sampled_from(UNITS))
            units, notional = data.draw(amounts), data.draw(amounts)
        # Balances.settle_trade must do exactly what apply() of its postings does, and refuse
        # exactly what apply() would refuse (plus a fee account that is a party to the trade).
        counters["steps"] += 1
        batch = [
            Posting(units_asset, units, seller, Bucket.HELD, buyer, Bucket.AVAILABLE),
            Posting(cash, notional, buyer, Bucket.HELD, seller, Bucket.AVAILABLE),
        ]
        if buyer_fee:
            batch.append(
                Posting(cash, buyer_fee, buyer, Bucket.HELD, fee_account, Bucket.AVAILABLE)
            )
        if seller_fee:
            batch.append(
                Posting(cash, seller_fee, seller, Bucket.AVAILABLE, fee_account, Bucket.AVAILABLE)
            )
        if unspent:
            batch.append(Posting(cash, unspent, buyer, Bucket.HELD, buyer, Bucket.AVAILABLE))
        expected = None if fee_account in (buyer, seller) else model_apply(self.model, batch)
        before = self.balances.to_bytes()
        try:
            applied = self.balances.settle_trade(
                units_asset, units, seller, buyer, cash, notional, buyer_fee, seller_fee,
                unspent, fee_account,
            )  # fmt: skip
        except PostingRejected:
            assert expected is None, f"refused a valid trade {batch}"
            assert self.balances.to_bytes() == before, "a refused trade changed the balances"
            counters["rejected"] += 1
            return
        assert expected is not None, f"settled an invalid trade {batch}"
        assert applied == batch
        self.model = expected
        counters["applied"] += 1
        counters["trades"] += 1

    def held(self, account: str, asset: str, bucket: Bucket, percent: int) -> int:
        """Return part of a funded bucket (at least 1, at most all), held: a part of what is
        available is reserved first, as an order reserves before it trades."""
        there = self.model[(account, asset, bucket)]
        part = min(there, max(1, there * percent // 100))
        if bucket is Bucket.AVAILABLE:
            posting = self.balances.hold(account, asset, part)
            expected = model_apply(self.model, [posting])
            assert expected is not None, f"held an invalid {posting}"
            self.model = expected
        return part

    @rule(batch=st.lists(postings, min_size=1, max_size=5))
    def random_batch(self, batch: list[Posting]) -> None:
        self.attempt(batch)

    @rule(account=accounts, asset=assets, amount=amounts, reserve=st.booleans())
    def hold_or_release(self, account: str, asset: str, amount: int, reserve: bool) -> None:
        counters["steps"] += 1
        source, target = (
            (Bucket.AVAILABLE, Bucket.HELD) if reserve else (Bucket.HELD, Bucket.AVAILABLE)
        )
        expected_posting = Posting(asset, amount, account, source, account, target)
        expected = model_apply(self.model, [expected_posting])
        before = self.balances.to_bytes()
        action = self.balances.hold if reserve else self.balances.release
        try:
            posting = action(account, asset, amount)
        except PostingRejected:
            assert expected is None, f"refused a valid {action.__name__} {expected_posting}"
            assert self.balances.to_bytes() == before
            counters["rejected"] += 1
            return
        assert expected is not None, f"accepted an invalid {action.__name__} {expected_posting}"
        assert posting == expected_posting
        self.model = expected
        counters["applied"] += 1

    @precondition(lambda self: self.model)
    @rule(spend_all=st.booleans(), account=internal_accounts, asset=assets)
    def move_exactly_what_is_there(self, spend_all: bool, account: str, asset: str) -> None:
        # Boundary cases: exactly the available amount is fine, one more is not.
        have = self.model.get((account, asset, Bucket.AVAILABLE), 0)
        amount = have if spend_all else have + 1
        if amount > 0:
            self.attempt([Posting(asset, amount, account, Bucket.AVAILABLE, "bob", Bucket.HELD)])

    @rule()
    def snapshot_round_trip(self) -> None:
        restored = Balances.from_bytes(self.balances.to_bytes())
        assert restored == self.balances
        assert restored.state_hash() == self.balances.state_hash()
        self.balances = restored  # Carry on from the snapshot: it must behave the same.

    @invariant()
    def balances_equal_the_model(self) -> None:
        for account in ACCOUNTS:
            for asset in ASSETS:
                assert self.balances.available(account, asset) == self.model.get(
                    (account, asset, Bucket.AVAILABLE), 0
                )
                assert self.balances.held(account, asset) == self.model.get(
                    (account, asset, Bucket.HELD), 0
                )

    @invariant()
    def an_accounts_balances_are_found_without_walking_the_others(self) -> None:
        for account in ACCOUNTS:
            assert self.balances.of_account(account) == [
                (asset, available, held)
                for owner, asset, available, held in self.balances.entries()
                if owner == account
            ]

    @invariant()
    def no_internal_balance_is_negative(self) -> None:
        for account, _, available, held in self.balances.entries():
            if not account.startswith(WORLD_PREFIX):
                assert available >= 0 and held >= 0

    @invariant()
    def value_is_conserved(self) -> None:
        everywhere = dict.fromkeys(ASSETS, 0)
        outside = dict.fromkeys(ASSETS, 0)
        for account, asset, available, held in self.balances.entries():
            everywhere[asset] += available + held
            if account.startswith(WORLD_PREFIX):
                outside[asset] += available + held
        assert everywhere == dict.fromkeys(ASSETS, 0)
        inside = {asset: -amount for asset, amount in outside.items() if amount}
        assert self.balances.totals() == inside


def test_balances_conserve_value_stay_non_negative_and_reject_atomically() -> None:
    print(f"balances property test: IPX_TEST_SEED={SEED}")
    counters.update(examples=0, steps=0, applied=0, rejected=0, trades=0)
    try:
        run_state_machine_as_test(
            seed(SEED)(BalancesMachine),
            settings=settings(
                max_examples=EXAMPLES_MAX,
                stateful_step_count=STEPS_MAX,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    finally:
        print(
            f"balances property test: {counters['examples']} examples, "
            f"{counters['steps']} steps ({counters['applied']} applied, "
            f"{counters['rejected']} rejected, {counters['trades']} trades settled by the fast "
            f"path); replay with IPX_TEST_SEED={SEED}"
        )
    assert counters["applied"] > counters["examples"], "the machine hardly applied anything"
    assert counters["rejected"] > counters["examples"], "the machine hardly tried anything invalid"
    assert counters["trades"] > 0, "no trade went through Balances.settle_trade"
