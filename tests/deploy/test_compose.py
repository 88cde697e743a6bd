"""Deployment: docker-compose.yml runs the exchange with Redis and Mosquitto, health-checked."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]  # No stubs shipped.

from gateway.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"


def _compose() -> dict[str, object]:
    document: dict[str, object] = yaml.safe_load(COMPOSE.read_text())
    return document


def test_every_service_has_a_health_check_and_the_journal_a_volume() -> None:
    services = _compose()["services"]
    assert isinstance(services, dict)
    assert set(services) == {"exchange", "redis", "mosquitto"}
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} has no health check"
    exchange = services["exchange"]
    assert "journal:/data" in exchange["volumes"]
    assert exchange["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "journal" in _compose()["volumes"]  # type: ignore[operator]


def test_the_image_command_is_one_ipx_serve_accepts() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    command_line = dockerfile[dockerfile.index("CMD [") + 4 :].replace("\\\n", " ")
    command = yaml.safe_load(command_line.strip())
    assert command[0] == "ipx"
    arguments = build_parser().parse_args(command[1:])
    assert arguments.redis_url == "redis://redis:6379/0"
    assert arguments.mqtt_url == "mqtt://mosquitto:1883"
    assert arguments.data_dir == "/data"


def test_docker_compose_accepts_the_file() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client on this machine")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("the docker client has no compose plugin here")
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
