"""--cluster and friends on the command line and in FERRY_RELAY_* variables; the
single relay stays standard library only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ferry.errors import EXIT_USAGE
from ferry_testing import procs
from ferry_testing.cluster import SECRET, RedisServer, node_env, require_binaries

RELAY = procs.ROOT / "relay"


def run_relay(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RELAY), *args], capture_output=True, text=True, timeout=60,
        env=env or procs.clean_env(),
    )  # fmt: skip


def test_the_single_relay_imports_neither_redis_nor_the_cluster_directory():
    code = (
        "import sys, ferry.cli.relay, ferry.cli.relay_serve, ferry.relay.server\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'redis'"
        " or m == 'ferry.relay.cluster'))"
    )
    env = procs.clean_env({"PYTHONPATH": str(procs.ROOT / "src")})
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_cluster_without_node_address_or_secret_is_a_usage_error():
    result = run_relay(":0", "--cluster", "redis://127.0.0.1:1/0")
    assert result.returncode == EXIT_USAGE
    assert "needs --node-address" in result.stderr
    assert "needs --cluster-secret-file" in result.stderr


def test_cluster_settings_come_from_the_environment_too():
    env = procs.clean_env({"FERRY_RELAY_CLUSTER": "redis://127.0.0.1:1/0"})
    result = run_relay(":0", env=env)
    assert result.returncode == EXIT_USAGE
    assert "needs --node-address" in result.stderr


def test_cluster_without_the_redis_package_says_how_to_get_it(tmp_path):
    plain = "python3"
    probe = subprocess.run([plain, "-c", "import redis"], capture_output=True, timeout=60)
    if probe.returncode == 0:
        pytest.skip("the system python3 has redis: nothing to show")
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    env = procs.clean_env({"FERRY_PYTHON": plain})
    result = run_relay(
        "127.0.0.1:0", "--cluster", "redis://127.0.0.1:1/0", "--node-address", "127.0.0.1:0",
        "--cluster-secret-file", str(secret), env=env,
    )  # fmt: skip
    assert result.returncode == EXIT_USAGE
    assert "pip install 'ferry[cluster]'" in result.stderr


def test_a_node_configured_only_by_environment_registers_in_redis(tmp_path: Path):
    require_binaries()
    redis = RedisServer(tmp_path)
    redis.start()
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    env = node_env() | {
        "FERRY_RELAY_CLUSTER": redis.url,
        "FERRY_RELAY_NODE_ADDRESS": "127.0.0.1:0",
        "FERRY_RELAY_CLUSTER_SECRET_FILE": str(secret),
        "FERRY_RELAY_NODE_ID": "envnode",
    }
    try:
        with procs.relay(tmp_path, env=env) as node:
            assert redis.get("ferry:node:envnode") == f"127.0.0.1:{node.port}"
            assert "node=envnode" in node.log()
    finally:
        redis.stop()
