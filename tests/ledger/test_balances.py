"""The rulebook of balances: how postings move cash and units, and what they may never do."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ledger.balances import Balances
from ledger.errors import PostingRejected
from ledger.records import BANK_ACCOUNT, ISSUANCE_ACCOUNT, Bucket, Posting

AVAILABLE = Bucket.AVAILABLE
HELD = Bucket.HELD
ROOT = Path(__file__).resolve().parents[2]


def deposit(account: str, amount: int, asset: str = "USD") -> Posting:
    return Posting(asset, amount, BANK_ACCOUNT, AVAILABLE, account, AVAILABLE)


def issue(account: str, amount: int, asset: str = "RS-1") -> Posting:
    return Posting(asset, amount, ISSUANCE_ACCOUNT, AVAILABLE, account, AVAILABLE)


def transfer(source: str, target: str, amount: int, asset: str = "USD") -> Posting:
    return Posting(asset, amount, source, AVAILABLE, target, AVAILABLE)


def funded() -> Balances:
    balances = Balances()
    balances.apply([deposit("alice", 1_000), deposit("bob", 500), issue("carol", 100)])
    return balances


def assert_rejected_and_unchanged(balances: Balances, postings: list[Posting], words: str) -> None:
    before = balances.to_bytes()
    with pytest.raises(PostingRejected, match=words):
        balances.apply(postings)
    assert balances.to_bytes() == before


# Moving value.


def test_a_deposit_credits_the_account_and_debits_the_bank_which_may_go_negative() -> None:
    balances = Balances()
    balances.apply([deposit("alice", 1_000)])
    assert balances.available("alice", "USD") == 1_000
    assert balances.held("alice", "USD") == 0
    assert balances.available(BANK_ACCOUNT, "USD") == -1_000


def test_a_transfer_moves_exactly_the_amount_between_two_accounts() -> None:
    balances = funded()
    balances.apply([transfer("alice", "bob", 300)])
    assert balances.available("alice", "USD") == 700
    assert balances.available("bob", "USD") == 800


def test_an_unknown_balance_reads_as_zero() -> None:
    assert Balances().available("nobody", "USD") == 0
    assert Balances().held("nobody", "USD") == 0


def test_a_trade_settles_cash_and_units_in_one_batch() -> None:
    balances = funded()
    balances.hold("alice", "USD", 250)  # Alice bids for 10 units at 25.
    balances.hold("carol", "RS-1", 10)  # Carol offers 10 units.
    balances.apply(
        [
            Posting("USD", 250, "alice", HELD, "carol", AVAILABLE),
            Posting("RS-1", 10, "carol", HELD, "alice", AVAILABLE),
        ]
    )
    assert (balances.available("alice", "USD"), balances.held("alice", "USD")) == (750, 0)
    assert (balances.available("carol", "USD"), balances.held("carol", "RS-1")) == (250, 0)
    assert balances.available("alice", "RS-1") == 10
    assert balances.available("carol", "RS-1") == 90


# Reservations for open orders.


def test_hold_moves_available_to_held_and_returns_the_posting_it_applied() -> None:
    balances = funded()
    posting = balances.hold("alice", "USD", 400)
    assert posting == Posting("USD", 400, "alice", AVAILABLE, "alice", HELD)
    assert (balances.available("alice", "USD"), balances.held("alice", "USD")) == (600, 400)
    replayed = funded()
    replayed.apply([posting])
    assert replayed == balances


def test_release_moves_held_back_to_available_and_returns_the_posting_it_applied() -> None:
    balances = funded()
    balances.hold("alice", "USD", 400)
    posting = balances.release("alice", "USD", 150)
    assert posting == Posting("USD", 150, "alice", HELD, "alice", AVAILABLE)
    assert (balances.available("alice", "USD"), balances.held("alice", "USD")) == (750, 250)


def test_hold_of_everything_available_is_allowed_and_one_more_is_not() -> None:
    balances = funded()
    balances.hold("alice", "USD", 1_000)
    before = balances.to_bytes()
    with pytest.raises(PostingRejected, match="cannot hold 1 USD for alice: only 0 available"):
        balances.hold("alice", "USD", 1)
    assert balances.to_bytes() == before


def test_release_of_more_than_is_held_is_rejected_and_changes_nothing() -> None:
    balances = funded()
    balances.hold("alice", "USD", 100)
    before = balances.to_bytes()
    with pytest.raises(PostingRejected, match="cannot release 101 USD for alice: only 100 held"):
        balances.release("alice", "USD", 101)
    assert balances.to_bytes() == before


def test_hold_for_an_account_never_seen_is_rejected() -> None:
    balances = Balances()
    with pytest.raises(PostingRejected, match="only 0 available"):
        balances.hold("nobody", "USD", 1)
    assert list(balances.entries()) == []


@pytest.mark.parametrize("amount", [0, -5, True])
@pytest.mark.parametrize("action", ["hold", "release"])
def test_reservations_take_only_positive_integer_amounts(action: str, amount: int) -> None:
    balances = funded()
    balances.hold("alice", "USD", 10)
    before = balances.to_bytes()
    with pytest.raises(PostingRejected, match="amount must be a positive integer"):
        getattr(balances, action)("alice", "USD", amount)
    assert balances.to_bytes() == before


@pytest.mark.parametrize("action", ["hold", "release"])
def test_world_accounts_never_hold_anything(action: str) -> None:
    balances = funded()
    with pytest.raises(PostingRejected, match="world accounts hold nothing"):
        getattr(balances, action)(BANK_ACCOUNT, "USD", 1)


# What apply() refuses, changing nothing.


def test_a_transfer_of_more_than_is_available_is_rejected_naming_the_account() -> None:
    balances = funded()
    assert_rejected_and_unchanged(
        balances,
        [transfer("alice", "bob", 1_001)],
        "alice has 1000 USD available but the postings take 1001",
    )


def test_held_value_cannot_be_spent_as_available() -> None:
    balances = funded()
    balances.hold("alice", "USD", 900)
    assert_rejected_and_unchanged(balances, [transfer("alice", "bob", 101)], "alice has 100 USD")


def test_two_postings_from_one_bucket_are_checked_together() -> None:
    balances = funded()  # Alice has 1000: each posting alone fits, both together do not.
    assert_rejected_and_unchanged(
        balances,
        [transfer("alice", "bob", 600), transfer("alice", "carol", 600)],
        "take 1200",
    )


def test_a_rejected_batch_undoes_the_postings_before_the_bad_one() -> None:
    balances = funded()
    assert_rejected_and_unchanged(
        balances,
        [transfer("alice", "bob", 100), deposit("dave", 5), transfer("bob", "carol", 10_000)],
        "bob has 500 USD",
    )
    assert balances.available("dave", "USD") == 0


def test_a_rejected_batch_leaves_no_empty_entry_behind() -> None:
    balances = funded()
    assert_rejected_and_unchanged(balances, [transfer("ghost", "newcomer", 1)], "ghost has 0")
    assert sorted({account for account, *_ in balances.entries()}) == [
        BANK_ACCOUNT,
        ISSUANCE_ACCOUNT,
        "alice",
        "bob",
        "carol",
    ]


def test_a_batch_is_judged_on_its_net_effect_so_posting_order_does_not_matter() -> None:
    # Bob receives 800 and passes 1200 on: fine as one atomic record, in either order.
    forward = [transfer("alice", "bob", 800), transfer("bob", "carol", 1_200)]
    for batch in (forward, forward[::-1]):
        balances = funded()
        balances.apply(batch)
        assert balances.available("bob", "USD") == 100
        assert balances.available("carol", "USD") == 1_200


@pytest.mark.parametrize("amount", [0, -1, True])
def test_a_posting_amount_must_be_a_positive_integer(amount: int) -> None:
    assert_rejected_and_unchanged(
        funded(), [transfer("alice", "bob", 1), transfer("alice", "bob", amount)], "positive"
    )


@pytest.mark.parametrize(
    "posting",
    [
        Posting("USD", 1, BANK_ACCOUNT, HELD, "alice", AVAILABLE),
        Posting("USD", 1, "alice", AVAILABLE, BANK_ACCOUNT, HELD),
    ],
    ids=["debit", "credit"],
)
def test_a_world_account_has_no_held_bucket(posting: Posting) -> None:
    assert_rejected_and_unchanged(funded(), [posting], "world accounts have no held bucket")


@pytest.mark.parametrize("bucket", [AVAILABLE, HELD])
def test_a_posting_from_a_bucket_to_itself_is_malformed(bucket: Bucket) -> None:
    balances = funded()
    balances.hold("alice", "USD", 10)
    posting = Posting("USD", 1, "alice", bucket, "alice", bucket)
    assert_rejected_and_unchanged(balances, [posting], "from a bucket to itself")


def test_world_accounts_may_go_negative_and_only_they() -> None:
    balances = Balances()
    balances.apply([issue("carol", 50), deposit("alice", 10)])
    assert balances.available(ISSUANCE_ACCOUNT, "RS-1") == -50
    assert_rejected_and_unchanged(balances, [transfer("alice", "bob", 11)], "negative")


# Totals, equality, hashing and snapshots.


def test_totals_sum_internal_accounts_per_asset_and_leave_out_world_accounts_and_zeros() -> None:
    balances = funded()
    balances.hold("alice", "USD", 300)
    balances.apply([Posting("USD", 500, "bob", AVAILABLE, BANK_ACCOUNT, AVAILABLE)])  # Withdraw.
    assert balances.totals() == {"RS-1": 100, "USD": 1_000}
    balances.apply([Posting("RS-1", 100, "carol", AVAILABLE, ISSUANCE_ACCOUNT, AVAILABLE)])
    assert balances.totals() == {"USD": 1_000}


def test_the_state_hash_does_not_depend_on_the_order_balances_were_created() -> None:
    postings = [deposit("alice", 1), deposit("bob", 2), issue("carol", 3), issue("alice", 4)]
    one, other = Balances(), Balances()
    one.apply(postings)
    for posting in reversed(postings):
        other.apply([posting])
    assert one.state_hash() == other.state_hash()
    assert one.to_bytes() == other.to_bytes()
    assert one == other


def test_a_balance_that_went_back_to_zero_equals_one_never_created() -> None:
    balances = funded()
    balances.apply([transfer("bob", "alice", 500), transfer("alice", "bob", 500)])
    balances.apply([deposit("dave", 7)])
    balances.apply([Posting("USD", 7, "dave", AVAILABLE, BANK_ACCOUNT, AVAILABLE)])
    assert balances.state_hash() == funded().state_hash()
    assert balances == funded()


def test_the_state_hash_changes_with_any_balance_and_with_the_bucket_it_is_in() -> None:
    hashes = {funded().state_hash()}
    moved = funded()
    moved.apply([transfer("alice", "bob", 1)])
    held = funded()
    held.hold("alice", "USD", 1)
    hashes |= {moved.state_hash(), held.state_hash()}
    assert len(hashes) == 3


def test_the_encoding_and_state_hash_are_pinned_so_snapshots_stay_readable() -> None:
    # A change here changes the snapshot format: bump _ENCODING_VERSION and say so.
    balances = funded()
    balances.hold("alice", "USD", 1)
    assert balances.to_bytes().hex() == (
        "92019594a54062616e6ba3555344d1fa240094a94069737375616e6365a452532d31d09c0094a5616c6963"
        "65a3555344cd03e70194a3626f62a3555344cd01f40094a56361726f6ca452532d316400"
    )
    assert balances.state_hash() == hashlib.sha256(balances.to_bytes()).digest()
    assert balances.state_hash().hex() == (
        "014845b0736d3dded8372d2c7ccd56cdf58a8eb334767051ad26075d1149ab13"
    )


def test_to_bytes_and_from_bytes_round_trip() -> None:
    balances = funded()
    balances.hold("alice", "USD", 123)
    restored = Balances.from_bytes(balances.to_bytes())
    assert restored == balances
    assert restored.state_hash() == balances.state_hash()
    restored.release("alice", "USD", 123)  # The restored balances are live, not a frozen copy.
    assert restored.available("alice", "USD") == 1_000


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"\x00garbage", "not a balances encoding"),
        (b"\x92\x02\x90", "version 2"),
        (b"\x92\x01\x92\x94\xa1b\xa1X\x01\x00\x94\xa1a\xa1X\x01\x00", "not strictly sorted"),
        (b"\x92\x01\x91\x94\xa1a\xa1X\x00\x00", "zero balance"),
        (b"\x92\x01\x91\x94\xa1a\xa1X\xff\x00", "negative balance"),
        (b"\x92\x01\x91\x94\xa2@b\xa1X\xff\x01", "world account @b holds"),
    ],
)
def test_from_bytes_refuses_anything_to_bytes_would_not_produce(data: bytes, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        Balances.from_bytes(data)


_HASH_SCRIPT = """
from ledger.balances import Balances
from ledger.records import Bucket, Posting
A = Bucket.AVAILABLE
b = Balances()
b.apply([Posting(f"RS-{i % 7}", i + 1, "@issuance", A, f"acct{i}", A) for i in range(50)])
b.hold("acct3", "RS-3", 2)
print(b.state_hash().hex())
"""


def test_the_state_hash_is_the_same_under_any_pythonhashseed() -> None:
    digests = set()
    for hash_seed in ("0", "1", "4242"):
        environment = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(ROOT)}
        result = subprocess.run(
            [sys.executable, "-c", _HASH_SCRIPT],
            env=environment,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        digests.add(result.stdout.strip())
    assert len(digests) == 1


def test_a_rejected_batch_whose_postings_share_entries_is_undone_exactly() -> None:
    balances = funded()
    balances.hold("alice", "USD", 1_000)
    assert_rejected_and_unchanged(
        balances,
        [
            Posting("USD", 1_000, "alice", HELD, "zoe", AVAILABLE),
            Posting("USD", 1_000, "zoe", AVAILABLE, "alice", HELD),
            Posting("USD", 5, "zoe", AVAILABLE, "alice", AVAILABLE),
        ],
        "zoe has 0 USD available",
    )


def test_a_batch_may_take_exactly_what_is_there_and_not_one_unit_more() -> None:
    exact = [transfer("alice", "bob", 400), transfer("alice", "carol", 600)]
    balances = funded()
    balances.apply(exact)
    assert balances.available("alice", "USD") == 0
    one_more = [transfer("alice", "bob", 400), transfer("alice", "carol", 601)]
    assert_rejected_and_unchanged(funded(), one_more, "alice has 1000 USD available")
