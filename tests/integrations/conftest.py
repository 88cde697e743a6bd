"""Real services for integration tests: Redis on 127.0.0.1:6379, Mosquitto on 127.0.0.1:1883.

On a laptop without them the tests skip with the reason; in CI (CI=true) a missing service
fails the test instead, because CI starts both (.ci/run).

private_broker: a Mosquitto of the test's own, on a free port, that lets in only the user and
password of its password file (the mosquitto package's mosquitto and mosquitto_passwd; .ci/run
installs it).
"""

from __future__ import annotations

import getpass
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

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
    _missing(f"{name} is not answering on {host}:{port}")


def _missing(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}, and CI must run this test (.ci/run starts it)")
    pytest.skip(message)


def _executable(name: str, *fallbacks: str) -> str:
    # Debian puts mosquitto in /usr/sbin, which a user's PATH may leave out.
    for path in (shutil.which(name), *fallbacks):
        if path and os.access(path, os.X_OK):
            return path
    _missing(f"{name} is not installed (Debian's mosquitto package)")
    raise AssertionError("unreachable")  # _missing raised.


@dataclass(frozen=True)
class PrivateBroker:
    """A Mosquitto that only lets in `username` with `password` (anonymous clients refused)."""

    host: str
    port: int
    username: str
    password: str


BROKER_START_S = 10.0


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    """Start a private Mosquitto with a password file on a free port; stop it afterwards."""
    mosquitto = _executable("mosquitto", "/usr/sbin/mosquitto")
    mosquitto_passwd = _executable("mosquitto_passwd", "/usr/bin/mosquitto_passwd")
    # Characters a URL must percent-encode, so a client that does not decode them fails.
    broker = PrivateBroker("127.0.0.1", 0, "ipx-feed", "s3cr@t:/%?#")
    directory = tmp_path / "mosquitto"
    directory.mkdir()
    passwords = directory / "passwd"
    passwords.touch(mode=0o600)
    subprocess.run(
        [mosquitto_passwd, "-b", str(passwords), broker.username, broker.password],
        check=True,
        capture_output=True,
        timeout=BROKER_START_S,
    )
    for _ in range(3):  # The free port may be taken between our probe and the broker's bind.
        with socket.socket() as probe:
            probe.bind((broker.host, 0))
            port = probe.getsockname()[1]
        config = directory / "mosquitto.conf"
        # "user": run as root, mosquitto would switch to user mosquitto, who cannot read the
        # test's files; run as anyone else, it is ignored.
        config.write_text(
            f"listener {port} {broker.host}\nallow_anonymous false\n"
            f"password_file {passwords}\npersistence false\nuser {getpass.getuser()}\n"
        )
        process = subprocess.Popen(
            [mosquitto, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + BROKER_START_S
        while process.poll() is None and not _answering(broker.host, port):
            assert time.monotonic() < deadline, "the private mosquitto did not start listening"
            time.sleep(0.05)
        if process.poll() is None:
            break
    else:
        pytest.fail("the private mosquitto did not start on a free port in 3 tries")
    try:
        yield PrivateBroker(broker.host, port, broker.username, broker.password)
    finally:
        process.terminate()
        try:
            process.wait(BROKER_START_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(BROKER_START_S)


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
