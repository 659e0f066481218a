"""A TCP listener on 127.0.0.1 that accepts connections and never answers: a stalled endpoint
(shared by test_stalled_endpoint and the CLI tests)."""

from __future__ import annotations

import contextlib
import socket
import threading


class SilentListener:
    """A TCP listener on 127.0.0.1 that accepts connections, keeps them open and never answers."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.port: int = self._server.getsockname()[1]
        self.accepted = 0
        self._open: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="silent-listener", daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._open.append(conn)  # held open, never read from, never written to
            self.accepted += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in [*self._open, self._server]:
            with contextlib.suppress(OSError):
                conn.close()
