"""What one Transit decrypt costs the caller's CPU, by HTTP client.

Sequential single decrypts against a real OpenBao dev server, on kept-alive connections, the
clients taking turns in blocks of 50 so that a slow minute hits each of them:

* **provider transport**: the provider's own ``TransitClient`` over its ``Transport``
  (:mod:`http.client` connections in its own pool, deadline watchdog, capped body read,
  failover and breaker bookkeeping);
* **urllib3 PoolManager**: the common third-party client (the provider used it before);
* **http.client**: the standard library's HTTP/1.1 connection, no pool around it (what the
  load driver's direct client sends);
* **bytes on a socket**: the request written and the answer read (status line, headers split,
  ``Content-Length`` honoured) on one kept-alive socket: the floor for any Python client, not a
  client to ship (no chunked bodies, no TLS, no limits).

Every client does the same work around the exchange: the JSON body built, the answer's JSON
parsed and its plaintext base64-decoded (the provider's transport also checks the answer's
shape and size, which is its own cost and part of its row).

The provider sends one such request per batch, so what a client saves here is divided by the
batch size in a storm and is whole for a lone Decrypt.

    python benchmarks/http_clients.py [--requests 1500]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import urllib3
from load_driver import Bench

from bao_kms.embedded import EmbeddedOpenBao
from bao_kms.openbao.auth.token_file import TokenFileAuth
from bao_kms.openbao.transit import TransitClient
from bao_kms.openbao.transport import Transport, make_pool

PATH = "/v1/transit/decrypt/kms"


def clients(bench: Bench, stack: contextlib.ExitStack) -> dict[str, Callable[[str], None]]:
    """Each client's one-decrypt function (the load driver's key, token and AAD); *stack*
    closes their connections."""
    openbao, aad = bench.openbao, bench.key_version.associated_data
    host, port = openbao.address.removeprefix("http://").rsplit(":", 1)
    headers = {"X-Vault-Token": bench.token, "Content-Type": "application/json"}

    def body(ciphertext: str) -> bytes:
        return orjson.dumps({"ciphertext": ciphertext, "associated_data": aad})

    def plaintext(status: int, answer: bytes) -> bytes:
        if status != 200:
            raise AssertionError(status)
        return base64.b64decode(orjson.loads(answer)["data"]["plaintext"])

    auth = TokenFileAuth(bench.token_file)
    pool = make_pool(ca_file=None)
    transport = Transport([openbao.address], auth, pool=pool, timeout=5)
    stack.callback(pool.clear)
    transit = TransitClient(transport, "transit", "kms")

    def provider(ciphertext: str) -> None:
        transit.decrypt(ciphertext.encode(), aad, deadline=time.monotonic() + 5)

    manager = urllib3.PoolManager(maxsize=1, block=True, retries=False)
    stack.callback(manager.clear)
    url = openbao.address + PATH

    def pool_manager(ciphertext: str) -> None:
        answer = manager.urlopen("POST", url, body=body(ciphertext), headers=headers)
        plaintext(answer.status, answer.data)

    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    stack.callback(connection.close)

    def stdlib(ciphertext: str) -> None:
        connection.request("POST", PATH, body=body(ciphertext), headers=headers)
        answer = connection.getresponse()
        plaintext(answer.status, answer.read())

    raw = socket.create_connection((host, int(port)), timeout=5)
    stack.callback(raw.close)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    head = f"POST {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    prefix = (head + "Content-Length: ").encode()

    def on_socket(ciphertext: str) -> None:
        payload = body(ciphertext)
        raw.sendall(prefix + str(len(payload)).encode() + b"\r\n\r\n" + payload)
        received = b""
        while b"\r\n\r\n" not in received:
            received += raw.recv(65536)
        header, _, rest = received.partition(b"\r\n\r\n")
        lines = header.split(b"\r\n")
        length = next(
            int(value)
            for name, _, value in (line.partition(b":") for line in lines[1:])
            if name.strip().lower() == b"content-length"
        )
        while len(rest) < length:
            rest += raw.recv(65536)
        plaintext(int(lines[0].split(b" ", 2)[1]), rest)

    return {
        "provider transport": provider,
        "urllib3 PoolManager": pool_manager,
        "http.client": stdlib,
        "bytes on a socket": on_socket,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1500, help="decrypts per client")
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="bk-http-") as workdir,
        EmbeddedOpenBao(workdir=Path(workdir) / "openbao") as openbao,
        contextlib.ExitStack() as stack,
    ):
        bench = Bench(argparse.Namespace(concurrency=1), Path(workdir), openbao)
        ciphertexts = [sealed.ciphertext.decode() for sealed in bench.fresh(args.requests)]
        by_client = clients(bench, stack)
        for send in by_client.values():  # connections open, imports and caches warm
            for ciphertext in ciphertexts[:100]:
                send(ciphertext)
        cpu = dict.fromkeys(by_client, 0.0)
        walls: dict[str, list[float]] = {name: [] for name in by_client}
        for start in range(0, len(ciphertexts), 50):
            for name, send in by_client.items():
                began_cpu = time.process_time()
                for ciphertext in ciphertexts[start : start + 50]:
                    began = time.perf_counter()
                    send(ciphertext)
                    walls[name].append(time.perf_counter() - began)
                cpu[name] += time.process_time() - began_cpu
    print(f"{len(ciphertexts)} sequential Transit decrypts per client, one connection each\n")
    print("| client | caller CPU ms/request | wall p50 ms |")
    print("|---|---:|---:|")
    for name, spent in cpu.items():
        ordered = sorted(walls[name])
        p50 = ordered[len(ordered) // 2] * 1000
        print(f"| {name} | {spent / len(ciphertexts) * 1000:.3f} | {p50:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
