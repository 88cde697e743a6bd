"""The wire's exact decimals, without a server."""

from __future__ import annotations

import pytest

from gateway import protocol


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
