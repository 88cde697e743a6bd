"""Real services for integration tests: Redis on 127.0.0.1:6379, Mosquitto on 127.0.0.1:1883.

On a laptop without them the tests skip with the reason; in CI (CI=true) a missing service
fails the test instead, because CI starts both (.ci/run).
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
import redis.asyncio as redis

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
MQTT_HOST, MQTT_PORT = "127.0.0.1", 1883


def _answering(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip (or, in CI, fail) when a service is not answering."""
    if _answering(host, port):
        return
    message = f"{name} is not answering on {host}:{port}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}, and CI must run this test (.ci/run starts it)")
    pytest.skip(message)


@pytest.fixture
def redis_service() -> tuple[str, int]:
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    return REDIS_HOST, REDIS_PORT


@pytest.fixture
def mqtt_service() -> tuple[str, int]:
    require_service("the MQTT broker", MQTT_HOST, MQTT_PORT)
    return MQTT_HOST, MQTT_PORT


@dataclass(frozen=True)
class RedisKeys:
    """A Redis URL, a key prefix of the test's own (so tests can share one Redis), and an
    asyncio client of it that reads bytes."""

    url: str
    prefix: str
    client: redis.Redis


@pytest_asyncio.fixture
async def redis_keys(redis_service: tuple[str, int]) -> AsyncIterator[RedisKeys]:
    """RedisKeys for one test; every key under its prefix is deleted afterwards."""
    host, port = redis_service
    url = f"redis://{host}:{port}/0"
    prefix = f"ipx-test-{secrets.token_hex(4)}"
    client = redis.Redis.from_url(url)
    try:
        yield RedisKeys(url, prefix, client)
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
