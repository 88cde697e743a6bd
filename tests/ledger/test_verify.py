"""The rulebook of the journal verifier: what a valid journal is, and one broken journal per rule.

Every failure must name the exact seq of the first record that breaks the rule.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from ledger.balances import Balances
from ledger.errors import VerificationFailed
from ledger.records import (
    BALANCE_MAX,
    BANK_ACCOUNT,
    GENESIS_HASH,
    ISSUANCE_ACCOUNT,
    Bucket,
    Posting,
    Record,
    RecordBody,
    seal,
)
from ledger.verify import JournalVerifier, verify_records

AVAILABLE = Bucket.AVAILABLE
HELD = Bucket.HELD
Step = tuple[str, Sequence[Posting]]


def journal(steps: Sequence[Step]) -> list[Record]:
    """Seal (kind, postings) steps into a chain with seqs 1, 2, 3, ..."""
    records: list[Record] = []
    prev_hash = GENESIS_HASH
    for seq, (kind, postings) in enumerate(steps, start=1):
        body = RecordBody(seq, 1_000 * seq, kind, kind.encode(), tuple(postings))
        records.append(seal(prev_hash, body))
        prev_hash = records[-1].hash
    return records


def deposit(account: str, amount: int, asset: str = "USD") -> Posting:
    return Posting(asset, amount, BANK_ACCOUNT, AVAILABLE, account, AVAILABLE)


def withdraw(account: str, amount: int, asset: str = "USD") -> Posting:
    return Posting(asset, amount, account, AVAILABLE, BANK_ACCOUNT, AVAILABLE)


def issue(account: str, amount: int, asset: str = "RS-1") -> Posting:
    return Posting(asset, amount, ISSUANCE_ACCOUNT, AVAILABLE, account, AVAILABLE)


def hold(account: str, amount: int, asset: str) -> Posting:
    return Posting(asset, amount, account, AVAILABLE, account, HELD)


# A day on the exchange: money in, shares issued, an order rests, a trade, a cancel, money out.
DAY: list[Step] = [
    ("deposit", [deposit("alice", 10_000)]),
    ("issue_shares", [issue("carol", 1_000)]),
    ("place_order", [hold("alice", 2_500, "USD")]),  # Alice bids 100 units at 25.
    ("place_order", [hold("carol", 60, "RS-1")]),  # Carol offers 60 units at 24.
    (
        "place_order",  # Carol's offer is the maker: 60 units trade at 24; price improvement.
        [
            Posting("USD", 1_440, "alice", HELD, "carol", AVAILABLE),
            Posting("RS-1", 60, "carol", HELD, "alice", AVAILABLE),
            Posting("USD", 60, "alice", HELD, "alice", AVAILABLE),
        ],
    ),
    ("cancel_order", [Posting("USD", 1_000, "alice", HELD, "alice", AVAILABLE)]),
    ("withdraw", [withdraw("carol", 1_440)]),
    ("deposit", [deposit("bob", 300, "EUR")]),
    ("halt", []),  # Records without postings are part of the chain too.
]


def assert_fails_at(records: Sequence[Record], seq: int, words: str) -> None:
    with pytest.raises(VerificationFailed, match=words) as failure:
        verify_records(records)
    assert failure.value.seq == seq, failure.value


def resealed_from(records: list[Record], index: int, replacement: Record) -> list[Record]:
    """Replace one record and re-seal everything after it, as a forger with the code would."""
    out = [*records[:index], replacement]
    for record in records[index + 1 :]:
        out.append(seal(out[-1].hash, record.body()))
    return out


# Journals that verify.


def test_a_day_on_the_exchange_verifies_and_is_summarized() -> None:
    records = journal(DAY)
    report = verify_records(records)
    assert report.records == len(DAY)
    assert report.last_seq == len(DAY)
    assert report.head_hash == records[-1].hash
    assert report.totals == {"EUR": 300, "RS-1": 1_000, "USD": 8_560}
    assert report.issued_units == {"RS-1": 1_000}
    assert report.net_deposits == {"EUR": 300, "USD": 8_560}


def test_the_report_carries_the_state_hash_of_the_balances_the_postings_imply() -> None:
    records = journal(DAY)
    expected = Balances()
    for record in records:
        expected.apply(record.postings)
    assert verify_records(records).state_hash == expected.state_hash()
    assert expected.available("alice", "RS-1") == 60
    assert expected.held("carol", "RS-1") == 0


def test_an_empty_journal_verifies_with_nothing_in_it() -> None:
    report = verify_records([])
    assert (report.records, report.last_seq, report.head_hash) == (0, 0, GENESIS_HASH)
    assert report.totals == report.issued_units == report.net_deposits == {}
    assert report.state_hash == Balances().state_hash()


def test_units_may_be_retired_through_issue_shares_and_cash_leave_through_withdraw() -> None:
    records = journal(
        [
            ("issue_shares", [issue("carol", 100)]),
            (
                "issue_shares",
                [Posting("RS-1", 100, "carol", AVAILABLE, ISSUANCE_ACCOUNT, AVAILABLE)],
            ),
            ("deposit", [deposit("alice", 5)]),
            ("withdraw", [withdraw("alice", 5)]),
        ]
    )
    report = verify_records(records)
    assert report.totals == {}
    assert report.issued_units == {"RS-1": 0}
    assert report.net_deposits == {"USD": 0}


def test_a_verifier_fed_record_by_record_tells_how_far_it_got_before_a_failure() -> None:
    records = journal([*DAY[:3], ("withdraw", [withdraw("alice", 10_000)])])
    verifier = JournalVerifier()
    for record in records[:3]:
        verifier.add(record)
    with pytest.raises(VerificationFailed):
        verifier.add(records[3])
    assert (verifier.records, verifier.last_seq, verifier.head_hash) == (3, 3, records[2].hash)
    assert verifier.report().net_deposits == {"USD": 10_000}  # The failed record left no trace.


# Continuity and the chain: one broken journal per rule.


def test_a_journal_must_start_at_seq_1() -> None:
    records = journal(DAY)
    assert_fails_at(records[1:], 1, "seq gap: expected seq 1, found 2")


def test_a_missing_record_is_a_seq_gap_at_the_first_missing_seq() -> None:
    records = journal(DAY)
    assert_fails_at([*records[:4], *records[5:]], 5, "expected seq 5, found 6")


def test_a_repeated_record_is_caught() -> None:
    records = journal(DAY)
    assert_fails_at([*records[:4], records[3], *records[4:]], 5, "expected seq 5, found 4")


def test_records_out_of_order_are_caught() -> None:
    records = journal(DAY)
    swapped = [*records[:2], records[3], records[2], *records[4:]]
    assert_fails_at(swapped, 3, "expected seq 3, found 4")


def test_renumbering_records_to_hide_a_gap_breaks_the_chain() -> None:
    records = journal(DAY)
    # Drop record 5 and renumber the rest without re-sealing: seqs look gapless now.
    renumbered = [*records[:4]] + [
        Record(r.seq - 1, r.ts_ns, r.kind, r.command, r.postings, r.prev_hash, r.hash)
        for r in records[5:]
    ]
    assert_fails_at(renumbered, 5, "broken link")


def test_a_broken_link_names_the_record_that_points_to_the_wrong_hash() -> None:
    records = journal(DAY)
    forged = seal(bytes(range(32)), records[6].body())  # Internally consistent, wrong parent.
    assert_fails_at(resealed_from(records, 6, forged), 7, "broken link: prev_hash 000102")


def test_an_altered_record_fails_its_own_hash() -> None:
    records = journal(DAY)
    r = records[1]
    altered = Record(
        r.seq, r.ts_ns, r.kind, r.command, (issue("carol", 1_001),), r.prev_hash, r.hash
    )
    assert_fails_at([records[0], altered, *records[2:]], 2, "altered record: stored hash")


@pytest.mark.parametrize("field", ["ts_ns", "kind", "command"])
def test_every_field_of_a_record_is_covered_by_its_hash(field: str) -> None:
    records = journal(DAY)
    r = records[4]
    values = {"ts_ns": r.ts_ns + 1, "kind": "cancel_order", "command": r.command + b"!"}
    changed = {
        **{name: getattr(r, name) for name in Record.__struct_fields__},
        field: values[field],
    }
    assert_fails_at([*records[:4], Record(**changed), *records[5:]], 5, "altered record")


def test_a_re_sealed_alteration_breaks_the_link_of_the_next_record() -> None:
    records = journal(DAY)
    resealed = seal(
        records[1].prev_hash, journal([DAY[0], ("issue_shares", [issue("carol", 9)])])[1].body()
    )
    assert_fails_at([records[0], resealed, *records[2:]], 3, "broken link")


# Balances: no internal account ever goes negative.


def test_withdrawing_more_than_was_deposited_is_a_negative_balance() -> None:
    records = journal([*DAY[:2], ("withdraw", [withdraw("alice", 10_001)])])
    assert_fails_at(records, 3, "alice has 10000 USD available but the postings take 10001")


def test_selling_units_one_does_not_have_is_a_negative_balance() -> None:
    steps: list[Step] = [
        *DAY[:2],
        ("place_order", [Posting("RS-1", 1, "alice", AVAILABLE, "carol", AVAILABLE)]),
    ]
    assert_fails_at(journal(steps), 3, "alice has 0 RS-1 available")


def test_spending_held_cash_twice_is_a_negative_balance() -> None:
    settle = DAY[4]
    assert_fails_at(journal([*DAY[:6], settle]), 7, "alice has 0 USD held")


def test_a_zero_amount_posting_is_invalid() -> None:
    steps: list[Step] = [DAY[0], ("place_order", [hold("alice", 0, "USD")])]
    assert_fails_at(journal(steps), 2, "invalid postings: posting amount must be a positive")


def test_a_world_account_in_a_held_bucket_is_invalid() -> None:
    steps: list[Step] = [("deposit", [Posting("USD", 5, BANK_ACCOUNT, HELD, "bob", AVAILABLE)])]
    assert_fails_at(journal(steps), 1, "world accounts have no held bucket")


# Bounds: every balance fits the journal's 64-bit integers.


def test_cash_outstanding_up_to_balance_max_verifies() -> None:
    steps: list[Step] = [("deposit", [deposit("alice", BALANCE_MAX // 2)])] * 2
    report = verify_records(journal(steps))
    assert report.net_deposits == {"USD": BALANCE_MAX}
    assert report.totals == {"USD": BALANCE_MAX}


def test_a_deposit_taking_cash_outstanding_past_balance_max_is_caught() -> None:
    # Each posting fits 64 bits, but their sum would not: the bank's balance would leave int64
    # and the report (its state hash) could not be made. The record is named, not a traceback.
    steps: list[Step] = [
        ("deposit", [deposit("alice", BALANCE_MAX)]),
        ("deposit", [deposit("bob", BALANCE_MAX)]),
    ]
    assert_fails_at(journal(steps), 2, f"more than BALANCE_MAX \\({BALANCE_MAX}\\) USD")


def test_units_issued_past_balance_max_are_caught() -> None:
    steps: list[Step] = [("issue_shares", [issue("carol", BALANCE_MAX), issue("dave", 1)])]
    assert_fails_at(journal(steps), 1, "more than BALANCE_MAX")


# Conservation: value crosses the boundary only through the records allowed to move it.


def test_units_created_outside_issue_shares_are_caught() -> None:
    steps: list[Step] = [*DAY[:3], ("place_order", [issue("alice", 5)])]
    assert_fails_at(
        journal(steps), 4, "place_order record moves 5 RS-1 through world account @issuance"
    )


def test_cash_created_outside_deposit_is_caught() -> None:
    steps: list[Step] = [*DAY[:5], ("distribute_royalty", [deposit("carol", 50)])]
    assert_fails_at(journal(steps), 6, "only records of kind deposit or withdraw may touch")


def test_cash_destroyed_outside_withdraw_is_caught() -> None:
    steps: list[Step] = [DAY[0], ("cancel_order", [withdraw("alice", 1)])]
    assert_fails_at(
        journal(steps), 2, "cancel_order record moves 1 USD through world account @bank"
    )


def test_units_destroyed_outside_issue_shares_are_caught() -> None:
    retire = Posting("RS-1", 1, "carol", AVAILABLE, ISSUANCE_ACCOUNT, AVAILABLE)
    assert_fails_at(
        journal([*DAY[:2], ("delist", [retire])]), 3, "only records of kind issue_shares"
    )


def test_a_world_account_no_record_may_touch_is_caught() -> None:
    mint = Posting("USD", 5, "@mint", AVAILABLE, "alice", AVAILABLE)
    assert_fails_at(
        journal([DAY[0], ("deposit", [mint])]), 2, "which only no record kind may touch"
    )


def test_cash_cannot_be_issued() -> None:
    steps: list[Step] = [DAY[0], ("issue_shares", [issue("carol", 10, asset="USD")])]
    assert_fails_at(journal(steps), 2, "USD moves through @issuance as units but it is cash")


def test_units_cannot_be_deposited() -> None:
    steps: list[Step] = [DAY[1], ("deposit", [deposit("carol", 10, asset="RS-1")])]
    assert_fails_at(journal(steps), 2, "RS-1 moves through @bank as cash but it is units")


def test_one_record_cannot_both_deposit_and_issue_the_same_asset() -> None:
    both = [deposit("alice", 1, asset="X"), issue("alice", 1, asset="X")]
    # No kind is allowed to touch both world accounts, so the flow rule fires first.
    assert_fails_at(journal([("deposit", both)]), 1, "through world account @issuance")


def test_the_final_conservation_check_catches_broken_balance_arithmetic() -> None:
    class LeakyBalances(Balances):
        # A bug that creates one unit out of nothing on every record with postings.
        def apply(self, postings: Sequence[Posting]) -> None:
            super().apply(postings)
            if postings:
                super().apply([Posting("USD", 1, "@nowhere", AVAILABLE, "alice", AVAILABLE)])

    verifier = JournalVerifier()
    verifier.balances = LeakyBalances()
    for record in journal(DAY[:3]):
        verifier.add(record)
    with pytest.raises(VerificationFailed, match="conservation broken") as failure:
        verifier.report()
    assert failure.value.seq == 3
