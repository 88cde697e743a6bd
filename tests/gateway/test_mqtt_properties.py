"""MQTT v5 properties packed by the publisher are byte for byte what paho would send."""

from __future__ import annotations

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.mqtt_publisher import packed_properties


@pytest.mark.parametrize(
    ("expiry_s", "user"),
    [
        (None, []),
        (None, [("seq", "7"), ("prev_seq", "6")]),
        (60, [("seq", "123456789")]),
        (None, [("k" * 200, "v" * 300)]),  # A length past 127 bytes takes two length bytes.
    ],
)
def test_packed_properties_equal_paho_packing(
    expiry_s: int | None, user: list[tuple[str, str]]
) -> None:
    paho = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    if expiry_s is not None:
        paho.MessageExpiryInterval = expiry_s
    paho.ContentType = "application/json"
    if user:
        paho.UserProperty = user
    assert packed_properties(expiry_s, user).pack() == paho.pack()  # type: ignore[no-untyped-call]
