"""Double-entry balances: per (account, asset), an available and a held part, in integers.

Invariants:
- Every change goes through postings; a posting moves a positive integer amount between two
  buckets, so the sum of every balance of an asset over all accounts (world accounts included)
  is always 0. Value is neither created nor destroyed here, only moved.
- An internal account (one whose id does not start with WORLD_PREFIX) never has a negative
  available or held part. World accounts stand for the outside world: they may go negative
  (the bank's balance is minus the net deposits) and they never hold anything (no HELD bucket).
- `apply()` is all or nothing and judges a batch (one journal record) on its net effect per
  bucket: two postings taking from one bucket are checked together, the order of postings
  inside a batch does not matter, and a rejected batch leaves the balances exactly as they
  were (it is undone by exact integer arithmetic before PostingRejected leaves apply()).
- `hold()` and `release()` are the one-posting fast paths of pre-trade risk; they follow the
  same rules and return the Posting they applied, for the record being built.
- A balance whose two parts are both 0 is the same as no balance at all: it is kept in memory
  (deleting and re-creating it would cost the hot path) but never encoded, so `state_hash()`
  and `to_bytes()` of an account that went back to 0 equal those of one never created.
- `to_bytes()` is canonical (entries sorted by (account, asset), one deterministic msgpack
  encoder), so `state_hash()` is equal for equal balances in any process, under any
  PYTHONHASHSEED, whatever order the balances were created in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import msgspec

from ledger.errors import PostingRejected
from ledger.records import WORLD_PREFIX, Bucket, Posting

_AVAILABLE = Bucket.AVAILABLE
_HELD = Bucket.HELD
_ENCODING_VERSION = 1

# One entry: (account, asset, available, held).
Entry = tuple[str, str, int, int]


class _State(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    version: int
    entries: list[tuple[str, str, int, int]]


_state_encoder = msgspec.msgpack.Encoder(order="deterministic")
_state_decoder = msgspec.msgpack.Decoder(_State)


def _is_world(account: str) -> bool:
    return account.startswith(WORLD_PREFIX)


class Balances:
    """Available and held balances per (account, asset), changed only by postings."""

    __slots__ = ("_assets_of", "_balances")

    def __init__(self) -> None:
        # (account, asset) -> [available, held]. One dict with a tuple key measured as fast as
        # nested dicts and keeps sorting for the canonical encoding trivial.
        self._balances: dict[tuple[str, str], list[int]] = {}
        # account -> the assets it has (had) an entry in: one account's balances are found
        # without walking every account's. Kept where an entry is made (never the hot path:
        # only a pair's first posting makes one); an entry undone leaves a name that finds
        # nothing.
        self._assets_of: dict[str, dict[str, None]] = {}

    def available(self, account: str, asset: str) -> int:
        """Return what the account can spend or reserve now."""
        balance = self._balances.get((account, asset))
        return 0 if balance is None else balance[0]

    def held(self, account: str, asset: str) -> int:
        """Return what is reserved for the account's open orders."""
        balance = self._balances.get((account, asset))
        return 0 if balance is None else balance[1]

    def apply(self, postings: Sequence[Posting]) -> None:
        """Apply a batch of postings atomically.

        Raises:
            PostingRejected: an amount is not a positive int, a posting moves value from a bucket
                to itself, a world account appears in a HELD bucket, or the batch's net effect
                would leave an internal bucket negative. Nothing has changed when it is raised.
        """
        if len(postings) == 1:
            self._apply_one(postings[0])
            return
        # A batch: move everything, then check every debited bucket on the net result, and on a
        # shortfall undo exactly (integer arithmetic) before raising. Measured about 1.4 times
        # as fast as first summing per-bucket deltas in a dict, checking, then mutating.
        balances = self._balances
        done = 0
        try:
            for posting in postings:
                amount = posting.amount
                debit_account = posting.debit_account
                credit_account = posting.credit_account
                debit_held = posting.debit_bucket is _HELD
                credit_held = posting.credit_bucket is _HELD
                if (
                    amount.__class__ is not int
                    or amount <= 0
                    or debit_account == credit_account
                    or (debit_held and debit_account.startswith(WORLD_PREFIX))
                    or (credit_held and credit_account.startswith(WORLD_PREFIX))
                ):
                    _check_posting(posting)  # Raises, unless a hold or release in one account.
                asset = posting.asset
                debit = balances.get((debit_account, asset))
                if debit is None:
                    debit = self._new_entry(debit_account, asset)
                credit = balances.get((credit_account, asset))
                if credit is None:
                    credit = self._new_entry(credit_account, asset)
                debit[debit_held] -= amount
                credit[credit_held] += amount
                done += 1
            for posting in postings:
                key = (posting.debit_account, posting.asset)
                if balances[key][posting.debit_bucket is _HELD] < 0 and not key[0].startswith(
                    WORLD_PREFIX
                ):
                    self._undo(postings)
                    done = 0
                    available, held = balances.get(key) or (0, 0)
                    raise PostingRejected(_shortfall_reason(postings, key, available, held))
        except BaseException:
            self._undo(postings[:done])
            raise

    def _apply_one(self, posting: Posting) -> None:
        # One posting (a deposit, a withdrawal, a reservation): check it against its debit
        # bucket, then move it; nothing to undo.
        amount = posting.amount
        debit_account = posting.debit_account
        credit_account = posting.credit_account
        debit_held = posting.debit_bucket is _HELD
        credit_held = posting.credit_bucket is _HELD
        if (
            amount.__class__ is not int
            or amount <= 0
            or debit_account == credit_account
            or (debit_held and debit_account.startswith(WORLD_PREFIX))
            or (credit_held and credit_account.startswith(WORLD_PREFIX))
        ):
            _check_posting(posting)  # Raises, unless a hold or release in one account.
        balances = self._balances
        debit_key = (debit_account, posting.asset)
        debit = balances.get(debit_key)
        if debit is None or debit[debit_held] < amount:
            if not debit_account.startswith(WORLD_PREFIX):
                available, held = (0, 0) if debit is None else debit
                raise PostingRejected(_shortfall_reason((posting,), debit_key, available, held))
            if debit is None:
                debit = self._new_entry(debit_account, posting.asset)
        # The credit entry is created after the debit one: when both are the same account (a
        # hold or a release), the lookup finds the debit entry rather than making a second.
        credit_key = (credit_account, posting.asset)
        credit = balances.get(credit_key)
        if credit is None:
            credit = self._new_entry(credit_account, posting.asset)
        debit[debit_held] -= amount
        credit[credit_held] += amount

    def hold(self, account: str, asset: str, amount: int) -> Posting:
        """Reserve amount of the account's available balance for an order; return the posting.

        Raises:
            PostingRejected: the amount is not a positive int, the account is a world account, or
                it has less than amount available. Nothing has changed when it is raised.
        """
        balance = self._balances.get((account, asset))
        if (
            balance is None
            or amount.__class__ is not int
            or not 0 < amount <= balance[0]
            or account.startswith(WORLD_PREFIX)
        ):
            raise PostingRejected(_reservation_refusal("hold", account, asset, amount, balance))
        balance[0] -= amount
        balance[1] += amount
        return Posting(asset, amount, account, _AVAILABLE, account, _HELD)

    def release(self, account: str, asset: str, amount: int) -> Posting:
        """Return amount of the account's held balance to available; return the posting.

        Raises:
            PostingRejected: the amount is not a positive int, the account is a world account, or
                it holds less than amount. Nothing has changed when it is raised.
        """
        balance = self._balances.get((account, asset))
        if (
            balance is None
            or amount.__class__ is not int
            or not 0 < amount <= balance[1]
            or account.startswith(WORLD_PREFIX)
        ):
            raise PostingRejected(_reservation_refusal("release", account, asset, amount, balance))
        balance[1] -= amount
        balance[0] += amount
        return Posting(asset, amount, account, _HELD, account, _AVAILABLE)

    def settle_trade(
        self,
        symbol: str,
        units: int,
        seller: str,
        buyer: str,
        currency: str,
        notional: int,
        buyer_fee: int,
        seller_fee: int,
        unspent: int,
        fee_account: str,
    ) -> list[Posting]:
        """Settle one trade delivery-versus-payment; return the postings it applied.

        The postings, in this order: units from the seller's held to the buyer's available;
        notional from the buyer's held cash to the seller's available; the buyer's fee (from
        held) and the seller's fee (from available) to fee_account's available, when nonzero;
        the unspent part of the buyer's reservation from held back to available, when nonzero.
        `apply()` of them gives the same balances: this is its fast path for the batch every
        trade makes, with the three debited buckets checked before anything moves (a trade
        is the most frequent batch, and the generic path checks and moves posting by posting).

        Raises:
            PostingRejected: units or notional not positive, a fee or unspent negative, the
                fee account a party to the trade, or a debited bucket short (the seller's held
                units, the buyer's held cash, the seller's available cash after the trade).
                Nothing has changed when it is raised.
        """
        balances = self._balances
        seller_units = balances.get((seller, symbol))
        buyer_cash = balances.get((buyer, currency))
        spent = notional + buyer_fee + unspent
        if (
            units <= 0
            or notional <= 0
            or buyer_fee < 0
            or seller_fee < 0
            or unspent < 0
            or fee_account == buyer
            or fee_account == seller
            or seller_units is None
            or seller_units[1] < units
            or buyer_cash is None
            or buyer_cash[1] < spent
            or seller_fee
            > notional
            + (balances.get((seller, currency)) or (0, 0))[0]
            + (unspent if seller == buyer else 0)  # A self-trade's refund lands there too.
        ):
            raise PostingRejected(
                f"trade settlement refused: {units} {symbol} from {seller!r} to {buyer!r} for "
                f"{notional} {currency}, fees {buyer_fee}/{seller_fee}, unspent {unspent}; "
                f"seller's units {seller_units}, buyer's cash {buyer_cash}"
            )
        # Held buckets of internal accounts only are debited, and world accounts hold nothing,
        # so no world account can be short here; credits may create entries.
        seller_units[1] -= units
        buyer_units = balances.get((buyer, symbol))
        if buyer_units is None:
            buyer_units = self._new_entry(buyer, symbol)
        buyer_units[0] += units
        buyer_cash[1] -= spent
        buyer_cash[0] += unspent
        seller_cash = balances.get((seller, currency))
        if seller_cash is None:
            seller_cash = self._new_entry(seller, currency)
        seller_cash[0] += notional - seller_fee
        postings = [
            Posting(symbol, units, seller, _HELD, buyer, _AVAILABLE),
            Posting(currency, notional, buyer, _HELD, seller, _AVAILABLE),
        ]
        if buyer_fee or seller_fee:
            fees = balances.get((fee_account, currency))
            if fees is None:
                fees = self._new_entry(fee_account, currency)
            fees[0] += buyer_fee + seller_fee
            if buyer_fee:
                postings.append(Posting(currency, buyer_fee, buyer, _HELD, fee_account, _AVAILABLE))
            if seller_fee:
                postings.append(
                    Posting(currency, seller_fee, seller, _AVAILABLE, fee_account, _AVAILABLE)
                )
        if unspent:
            postings.append(Posting(currency, unspent, buyer, _HELD, buyer, _AVAILABLE))
        return postings

    def totals(self) -> dict[str, int]:
        """Return per asset the sum over internal accounts of available + held (zeros left out)."""
        totals: dict[str, int] = {}
        for (account, asset), (available, held) in self._balances.items():
            if not _is_world(account):
                totals[asset] = totals.get(asset, 0) + available + held
        return {asset: total for asset, total in sorted(totals.items()) if total}

    def of_account(self, account: str) -> list[tuple[str, int, int]]:
        """(asset, available, held) of every nonzero balance of one account, by asset."""
        balances = self._balances
        found = []
        for asset in sorted(self._assets_of.get(account, ())):
            balance = balances.get((account, asset))
            if balance is not None and (balance[0] or balance[1]):
                found.append((asset, balance[0], balance[1]))
        return found

    def _new_entry(self, account: str, asset: str) -> list[int]:
        entry = self._balances[(account, asset)] = [0, 0]
        assets = self._assets_of.get(account)
        if assets is None:
            self._assets_of[account] = {asset: None}
        else:
            assets[asset] = None
        return entry

    def entries(self) -> Iterator[Entry]:
        """Yield (account, asset, available, held) for every nonzero balance, in sorted order."""
        for (account, asset), (available, held) in sorted(self._balances.items()):
            if available or held:
                yield account, asset, available, held

    def state_hash(self) -> bytes:
        """Return sha256 of the canonical encoding: equal for equal balances, in any process."""
        return hashlib.sha256(self.to_bytes()).digest()

    def to_bytes(self) -> bytes:
        """Encode the balances canonically (for snapshots and the state hash)."""
        return _state_encoder.encode(_State(_ENCODING_VERSION, list(self.entries())))

    @classmethod
    def from_bytes(cls, data: bytes) -> Balances:
        """Decode what to_bytes() produced; raise ValueError on anything else."""
        try:
            state = _state_decoder.decode(data)
        except msgspec.DecodeError as error:
            raise ValueError(f"not a balances encoding: {error}") from error
        if state.version != _ENCODING_VERSION:
            raise ValueError(f"balances encoding version {state.version} is not supported")
        balances = cls()
        previous: tuple[str, str] | None = None
        for account, asset, available, held in state.entries:
            key = (account, asset)
            if previous is not None and key <= previous:
                raise ValueError(f"balance entries not strictly sorted at {key}")
            previous = key
            if not (available or held):
                raise ValueError(f"zero balance encoded for {key}")
            if _is_world(account) and held:
                raise ValueError(f"world account {account} holds {held} {asset}")
            if not _is_world(account) and (available < 0 or held < 0):
                raise ValueError(f"negative balance for internal account {key}")
            balances._new_entry(account, asset)[:] = (available, held)
        return balances

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Balances):
            return NotImplemented
        return list(self.entries()) == list(other.entries())

    __hash__ = None  # type: ignore[assignment]  # Mutable: not hashable.

    def __repr__(self) -> str:
        return f"Balances({list(self.entries())!r})"

    def _undo(self, postings: Sequence[Posting]) -> None:
        # Reverse exactly what apply() did for these postings; entries left at zero are dropped
        # so that a rejected batch leaves not even an empty entry behind.
        balances = self._balances
        touched: list[tuple[str, str]] = []
        for posting in reversed(postings):
            debit_key = (posting.debit_account, posting.asset)
            credit_key = (posting.credit_account, posting.asset)
            balances[debit_key][posting.debit_bucket is _HELD] += posting.amount
            balances[credit_key][posting.credit_bucket is _HELD] -= posting.amount
            touched += (debit_key, credit_key)
        for key in touched:  # Only after every posting is undone: they may share entries.
            if balances.get(key) == [0, 0]:
                del balances[key]


def _check_posting(posting: Posting) -> None:
    # Reject what no balance could make valid: a bad amount, a world account's held bucket, or
    # a posting from a bucket to itself.
    amount = posting.amount
    if amount.__class__ is not int or amount <= 0:
        raise PostingRejected(f"posting amount must be a positive integer: {posting!r}")
    debit_held = posting.debit_bucket is _HELD
    credit_held = posting.credit_bucket is _HELD
    if (debit_held and posting.debit_account.startswith(WORLD_PREFIX)) or (
        credit_held and posting.credit_account.startswith(WORLD_PREFIX)
    ):
        raise PostingRejected(f"world accounts have no held bucket: {posting!r}")
    if debit_held == credit_held and posting.debit_account == posting.credit_account:
        raise PostingRejected(f"posting moves value from a bucket to itself: {posting!r}")


def _shortfall_reason(
    postings: Sequence[Posting], key: tuple[str, str], available: int, held: int
) -> str:
    account, asset = key
    taken = dict.fromkeys(Bucket, 0)
    given = dict.fromkeys(Bucket, 0)
    for posting in postings:
        if (posting.debit_account, posting.asset) == key:
            taken[posting.debit_bucket] += posting.amount
        if (posting.credit_account, posting.asset) == key:
            given[posting.credit_bucket] += posting.amount
    for bucket, before in ((_AVAILABLE, available), (_HELD, held)):
        after = before - taken[bucket] + given[bucket]
        if after < 0:
            return (
                f"{account} has {before} {asset} {bucket.value} but the postings take "
                f"{taken[bucket]} and give {given[bucket]}: it would go negative ({after})"
            )
    raise AssertionError(f"no shortfall for {key}")  # Callers come here only with one.


def _reservation_refusal(
    action: str, account: str, asset: str, amount: object, balance: list[int] | None
) -> str:
    if account.startswith(WORLD_PREFIX):
        return f"cannot {action} for world account {account}: world accounts hold nothing"
    if amount.__class__ is not int or not isinstance(amount, int) or amount <= 0:
        return (
            f"cannot {action} {amount!r} {asset} for {account}: amount must be a positive integer"
        )
    available, held = (0, 0) if balance is None else balance
    if action == "hold":
        return f"cannot hold {amount} {asset} for {account}: only {available} available"
    return f"cannot release {amount} {asset} for {account}: only {held} held"
