"""Flower's exposure: as the Procfile runs it, it listens on localhost only and asks for a password, and it refuses to
start without one."""

import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.security.test_access import basic
from tests.utils import terminate, wait_for

ROOT = Path(__file__).resolve().parents[2]


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(":", 1) for line in lines if line.strip() and not line.startswith("#"))


def test_procfile_binds_flower_and_web_to_localhost():
    processes = {name: command.strip() for name, command in procfile().items()}
    assert processes["flower"].split() == ["FLOWER_ADDRESS=127.0.0.1", "docker/bin/flower"]
    assert "WEB_BIND=127.0.0.1:8000" in processes["web"].split()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as the kernel lists them) with a socket listening on `port`, IPv4 and IPv6."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, _, hex_port = fields[1].rpartition(":")
            if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                found.add(address)
    return found


def http_status(port: int, authorization: str | None) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/")
    if authorization:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_flower_as_the_procfile_runs_it_listens_on_localhost_only_and_requires_basic_auth():
    # `VAR=value ... command`, exactly as honcho runs the Procfile line.
    words = procfile()["flower"].split()
    assignments = dict(word.split("=", 1) for word in words if "=" in word and not word.startswith("docker/"))
    command = [word for word in words if word.startswith("docker/")]
    port = free_port()
    env = {
        **os.environ, **assignments,
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        "FLOWER_PORT": str(port),
        "FLOWER_BASIC_AUTH": "inspector:flower-secret-passphrase",
    }
    process = subprocess.Popen([str(ROOT / command[0])], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def listening():
            assert process.poll() is None, f"flower exited with {process.returncode}"
            return listening_addresses(port)

        addresses = wait_for(listening, timeout=60, message="flower to listen")
        assert addresses == {"0100007F"}, addresses  # 127.0.0.1, and nothing on another or a wildcard address
        assert http_status(port, None) == 401
        assert http_status(port, basic("inspector", "wrong")) == 401
        assert http_status(port, basic("inspector", "flower-secret-passphrase")) == 200
        # The password stays off the command line, where any local user could read it.
        cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes()
        assert b"flower-secret-passphrase" not in cmdline
    finally:
        terminate(process, timeout=30)


@pytest.mark.parametrize("value", [None, ""])
def test_flower_refuses_to_start_without_basic_auth(value):
    env = {key: val for key, val in os.environ.items() if key != "FLOWER_BASIC_AUTH"}
    if value is not None:
        env["FLOWER_BASIC_AUTH"] = value
    # If the guard were missing, Flower would start and this would time out (and kill it) instead of passing.
    result = subprocess.run([str(ROOT / "docker" / "bin" / "flower")], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 64, (result.returncode, result.stdout, result.stderr)
    assert result.stderr.strip() == "flower: set FLOWER_BASIC_AUTH=user:password"
