"""The socket: mode, stale-socket reclaim, never stealing a live one, SIGTERM drain."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time

import grpc
import pytest
import yaml

from _support import provider_document, wait_for
from bao_kms.api.client import KmsClient
from bao_kms.embedded import EmbeddedOpenBao
from bao_kms.errors import SocketError
from bao_kms.manifests import openbao_policy
from bao_kms.provider import Provider

pytestmark = pytest.mark.openbao


def test_socket_gets_the_configured_mode(start_provider):
    running = start_provider()
    mode = stat.S_IMODE(running.socket_path.stat().st_mode)
    assert mode == 0o660


def test_stale_socket_from_a_crash_is_reclaimed(start_provider, socket_dir):
    path = socket_dir / "kms-0.sock"
    leftover = socket.socket(socket.AF_UNIX)
    leftover.bind(str(path))
    leftover.close()  # the file stays; nobody listens: connect gets ECONNREFUSED
    assert stat.S_ISSOCK(path.lstat().st_mode)
    running = start_provider()
    assert running.socket_path == path
    assert running.client.status().healthz == "ok"


def test_live_socket_is_never_stolen(start_provider):
    first = start_provider()
    second = Provider(first.config)  # same socket path
    with pytest.raises(SocketError, match="in use"):
        second.start()
    assert first.socket_path.exists()
    with KmsClient(first.socket_path) as client:
        assert client.status().healthz == "ok"


def test_a_regular_file_in_the_way_is_not_removed(start_provider, socket_dir):
    (socket_dir / "kms-0.sock").write_text("not a socket")
    with pytest.raises(SocketError, match="not a socket"):
        start_provider()
    assert (socket_dir / "kms-0.sock").read_text() == "not a socket"


def test_symlinked_socket_path_is_refused(start_provider, socket_dir):
    (socket_dir / "elsewhere").mkdir()
    os.symlink(socket_dir / "elsewhere" / "real.sock", socket_dir / "kms-0.sock")
    with pytest.raises(SocketError, match="symlink"):
        start_provider()


@pytest.mark.timeout(120)
def test_sigterm_drains_in_flight_calls_then_removes_the_socket(socket_dir):
    with EmbeddedOpenBao() as server:
        server.setup_transit()
        token_file = socket_dir / "token"
        token_file.write_text(server.create_token(openbao_policy("transit", "kms")))
        token_file.chmod(0o600)  # the provider refuses credential files others can read
        socket_path = socket_dir / "kms.sock"
        document = provider_document(server, token_file, socket_path)
        document["openbao"]["timeout"] = "10s"
        config_file = socket_dir / "config.yaml"
        config_file.write_text(yaml.safe_dump(document))
        provider = subprocess.Popen(
            [sys.executable, "-m", "bao_kms", "serve", "--config", str(config_file)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_for(socket_path.exists)
            client = KmsClient(socket_path, timeout=15)
            wait_for(lambda: client.status().healthz == "ok")
            seed = os.urandom(32)
            encrypted = client.encrypt(seed)

            outcome: dict[str, object] = {}

            def slow_decrypt() -> None:
                try:
                    outcome["plaintext"] = client.decrypt(
                        encrypted.ciphertext, encrypted.key_id, encrypted.annotations
                    ).plaintext
                except grpc.RpcError as error:
                    outcome["error"] = error.code()

            os.kill(server.pid, signal.SIGSTOP)  # OpenBao hangs: the Decrypt stays in flight
            try:
                caller = threading.Thread(target=slow_decrypt)
                caller.start()
                time.sleep(0.5)
                provider.send_signal(signal.SIGTERM)
                time.sleep(0.5)
                assert caller.is_alive(), "the in-flight call finished before OpenBao resumed"
                late = KmsClient(socket_path, timeout=1)
                with pytest.raises(grpc.RpcError):
                    late.status()  # draining: no new calls
                late.close()
            finally:
                os.kill(server.pid, signal.SIGCONT)
            caller.join(15)
            assert outcome == {"plaintext": seed}
            assert provider.wait(15) == 0
            assert not socket_path.exists()
            client.close()
        finally:
            if provider.poll() is None:
                provider.kill()
                provider.wait()
            stderr = provider.stderr.read().decode()
            provider.stderr.close()
    assert "Traceback" not in stderr
