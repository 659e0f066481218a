"""A TCP listener on 127.0.0.1 that accepts connections and never answers: a stalled endpoint
(shared by test_stalled_endpoint and the CLI tests)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time


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


#: the part of an exit script that makes its tries: ``get_actor`` until the test, which sees
#: its listener, answers on stdin that one reached the endpoint (``run_until_it_connected``)
TRIES_UNTIL_TOLD = """
while True:
    try:
        vc.get_actor("x")
    except vc.StorageTimeoutError:
        print("timed out", flush=True)
    if sys.stdin.readline().strip() != "again":
        break
print(time.time(), flush=True)  # the script's end: the interpreter exits from here
"""


def run_until_it_connected(
    listener: SilentListener, args: list[str], env: dict[str, str] | None = None, tries: int = 10
) -> tuple[int, float, float]:
    """Run the exit script ``args`` (ending in :data:`TRIES_UNTIL_TOLD`), telling it to try
    again while ``listener`` saw no connection (at most ``tries``): on a loaded machine building
    the client (botocore loads its service model) outlasted two fixed tries, none of whose
    requests reached the socket. Returns (tries made, the script's end as it printed it, the
    time it had exited); fails unless it exited 0 after every try timed out."""
    script = subprocess.Popen(
        args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert script.stdin is not None and script.stdout is not None
    made = 0
    try:
        while script.stdout.readline().strip() == "timed out":
            made += 1
            again = listener.accepted < 1 and made < tries
            script.stdin.write("again\n" if again else "stop\n")
            script.stdin.flush()
            if not again:
                break
        out, err = script.communicate(timeout=120)
    finally:
        if script.poll() is None:
            script.kill()
            script.wait()
    exited = time.time()
    assert script.returncode == 0, err[-2000:]
    assert made >= 1 and len(out.split()) == 1, (made, out, err)  # every try timed out; then its end
    return made, float(out.split()[-1]), exited
