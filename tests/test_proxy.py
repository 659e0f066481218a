"""The dropping proxy itself: it stops cleanly with connections still open."""

from __future__ import annotations

import socket
import sys
import threading
from typing import Any

from garbage import full_collection

from vactor_cloud.testing.proxy import DroppingProxy


def _silent_upstream() -> tuple[socket.socket, str]:
    """A 127.0.0.1 listener that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    return server, f"http://127.0.0.1:{server.getsockname()[1]}"


def test_stop_with_open_connections_leaves_no_coroutine_to_fail_later() -> None:
    # CI once failed in an unrelated later test with "Exception ignored in:
    # <coroutine object DroppingProxy._serve>": stop() left connection
    # coroutines suspended on a closed loop, and their cleanup ran at GC time.
    upstream, url = _silent_upstream()
    unraisable: list[Any] = []
    old_hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    try:
        proxy = DroppingProxy(url, drop_share=0.0)
        endpoint = proxy.start()
        host, port = endpoint.removeprefix("http://").split(":")
        clients = []
        for _ in range(3):
            client = socket.create_connection((host, int(port)), timeout=5)
            # A whole request, so the proxy waits on the silent upstream ...
            client.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
            clients.append(client)
        partial = socket.create_connection((host, int(port)), timeout=5)
        partial.sendall(b"GET /y HTTP/1.1\r\n")  # ... and one still mid-head.
        clients.append(partial)
        deadline = threading.Event()
        for _ in range(100):
            if proxy.stats.connections >= 4 and proxy.stats.requests >= 3:
                break
            deadline.wait(0.05)
        assert proxy.stats.connections == 4
        proxy.stop()
        del proxy
        full_collection()
        for client in clients:
            client.close()
        full_collection()
    finally:
        sys.unraisablehook = old_hook
        upstream.close()
    assert unraisable == [], [(u.exc_type, u.exc_value, u.object) for u in unraisable]
