"""A listener on a free loopback port that serves each connection on its own daemon thread:
the base of the tests' hand-written HTTP servers (hostile ones included)."""

from __future__ import annotations

import socket
import threading


class LoopbackServer:
    """Accepts on ``127.0.0.1``; :meth:`serve` handles one connection (and closes it).
    :attr:`connections` counts the connections accepted so far."""

    scheme = "http"

    def __init__(self) -> None:
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self._listener.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            self.connections += 1  # only this thread writes it
            threading.Thread(target=self.serve, args=(client,), daemon=True).start()

    def serve(self, client: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._listener.close()
