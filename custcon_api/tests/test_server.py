"""`python -m custcon_api` as an operator runs it: a real uvicorn server on a loopback
port, logged in to over a real socket with urllib, then stopped by its PID."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from .conftest import PASSWORDS, REPOSITORY_ROOT


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_until_listening(process: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited early"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the server did not listen within 30 s")


def test_log_in_over_a_real_socket(database_url: str) -> None:
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "custcon_api",
            "--database",
            database_url,
            "--listen",
            f"127.0.0.1:{port}",
        ],
        cwd=REPOSITORY_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_until_listening(process, port)
        base = f"http://127.0.0.1:{port}"
        form = urllib.parse.urlencode(
            {"username": "admin@demo", "password": PASSWORDS["admin@demo"]}
        ).encode()
        with urllib.request.urlopen(f"{base}/api/v1/auth/token", data=form, timeout=10) as reply:
            assert reply.status == 200
            assert reply.headers["Content-Type"] == "application/json"
            token = json.load(reply)
        assert token["token_type"] == "bearer" and token["expires_in"] == 900
        request = urllib.request.Request(
            f"{base}/api/v1/me", headers={"Authorization": f"Bearer {token['access_token']}"}
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert json.load(reply)["login"] == "admin@demo"
        try:
            urllib.request.urlopen(f"{base}/api/v1/me", timeout=10)
            raise AssertionError("no token was accepted")
        except urllib.error.HTTPError as error:
            assert error.code == 401
            assert error.headers["WWW-Authenticate"] == 'Bearer realm="custcon"'
    finally:
        os.kill(process.pid, signal.SIGTERM)
        try:
            _, stderr = process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.communicate()
            raise
    assert process.returncode == 0, stderr.decode(errors="replace")
    assert b"Traceback" not in stderr


def test_a_bad_listen_address_exits_2(database_url: str) -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "custcon_api",
            "--database",
            database_url,
            "--listen",
            "localhost:80",
        ],
        cwd=REPOSITORY_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 2
    assert "is not an IP address" in completed.stderr
