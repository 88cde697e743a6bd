"""The wire's exact decimals, the order rate limit and the page limits, without a server.

Rules:
- orders.open and account.fills answer a page: `limit` items (PAGE_LIMIT_DEFAULT unless
  given, at most PAGE_LIMIT_MAX: one more is refused 400), after the cursor `after` (0: from
  the first).
"""

from __future__ import annotations

import pytest

from gateway import protocol
from gateway.sessions import OrderRateLimiter


def test_decimal_conversion_is_exact() -> None:
    assert protocol.price_to_ticks("100.10", "USD", 10) == 1001
    assert protocol.price_to_ticks("100.1000000000", "USD", 10) == 1001
    assert protocol.amount_to_minor("0.07", "USD") == 7
    assert protocol.amount_to_minor("1234", "JPY") == 1234
    assert protocol.minor_to_amount(123456, "USD") == "1234.56"
    assert protocol.minor_to_amount(5, "USD") == "0.05"
    assert protocol.minor_to_amount(1234, "KRW") == "1234"
    with pytest.raises(protocol.ProtocolError) as refused:
        protocol.price_to_ticks("1.03501", "USD", 1)
    assert refused.value.code == "INVALID_PRICE_INCREMENT"
    assert refused.value.message == "price 1.03501 is not a multiple of the tick 0.01"
    with pytest.raises(protocol.ProtocolError):
        protocol.amount_to_minor("0.001", "USD")


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("1.005", "OMR", 1_005),
        ("1.5", "OMR", 1_500),
        ("2.250", "JOD", 2_250),
        ("1.005", "KWD", 1_005),
        ("1000", "VND", 1_000),
        ("5000", "XOF", 5_000),
        ("0.0001", "UYW", 1),
    ],
)
def test_cash_converts_with_the_iso_4217_minor_units_of_its_currency(
    text: str, currency: str, minor: int
) -> None:
    assert protocol.amount_to_minor(text, currency) == minor
    assert protocol.amount_to_minor(protocol.minor_to_amount(minor, currency), currency) == minor


def test_cash_is_formatted_with_the_decimals_of_its_currency() -> None:
    assert protocol.minor_to_amount(1_500, "OMR") == "1.500"
    assert protocol.minor_to_amount(100_000, "VND") == "100000"
    assert protocol.ticks_to_price(3, "KWD", 5) == "0.015"


@pytest.mark.parametrize(("text", "currency"), [("1000.50", "VND"), ("1.0005", "OMR")])
def test_more_decimals_than_the_currency_has_are_refused(text: str, currency: str) -> None:
    with pytest.raises(protocol.ProtocolError) as refused:
        protocol.amount_to_minor(text, currency)
    assert (refused.value.status, refused.value.code) == (400, "VALIDATION_ERROR")


@pytest.mark.parametrize("currency", ["ABC", "XAU", "XTS", "usd"])
def test_a_code_that_is_no_currency_of_the_exchange_is_refused_at_the_edge(currency: str) -> None:
    with pytest.raises(protocol.ProtocolError) as amount:
        protocol.amount_to_minor("1", currency)
    with pytest.raises(protocol.ProtocolError) as price:
        protocol.price_to_ticks("1", currency, 1)
    for refused in (amount.value, price.value):
        assert (refused.status, refused.code) == (400, "VALIDATION_ERROR")
        assert f"currency {currency!r}" in refused.message


def test_the_order_rate_limit_admits_the_burst_then_refills_at_the_rate() -> None:
    now = [64.0]  # Times and rates exact in binary, so the waits are exact too.
    limiter = OrderRateLimiter(rate_per_s=4, burst=3, clock=lambda: now[0])
    assert [limiter.admit("alice") for _ in range(3)] == [None, None, None]  # N
    assert limiter.admit("alice") == 250  # N + 1: one token comes in 250 ms.
    assert limiter.admit("bob") is None  # Per account.
    now[0] += 0.125
    assert limiter.admit("alice") == 125
    now[0] += 0.125
    assert limiter.admit("alice") is None
    now[0] += 60.0  # A long pause refills only up to the burst.
    assert [limiter.admit("alice") for _ in range(4)] == [None, None, None, 250]


@pytest.mark.parametrize("method", ["orders.open", "account.fills"])
def test_a_page_holds_the_default_unless_asked_and_never_more_than_the_max(method: str) -> None:
    def params(text: str) -> protocol.PageParams:
        request = protocol.decode_request(f'{{"id": "1", "method": "{method}", "params": {text}}}')
        decoded = protocol.decode_params(request)
        assert isinstance(decoded, protocol.PageParams)
        return decoded

    default = params("{}")
    assert (default.limit, default.after) == (protocol.PAGE_LIMIT_DEFAULT, 0)
    assert protocol.PAGE_LIMIT_DEFAULT == 1_000 and protocol.PAGE_LIMIT_MAX == 10_000
    most = params(f'{{"limit": {protocol.PAGE_LIMIT_MAX}, "after": 7}}')  # N: the max.
    assert (most.limit, most.after) == (protocol.PAGE_LIMIT_MAX, 7)
    # N + 1, and below the least.
    for bad in (f'{{"limit": {protocol.PAGE_LIMIT_MAX + 1}}}', '{"limit": 0}', '{"after": -1}'):
        with pytest.raises(protocol.ProtocolError) as refused:
            params(bad)
        assert (refused.value.status, refused.value.code) == (400, "VALIDATION_ERROR")
