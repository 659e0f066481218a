"""``vactor timers run`` is a long-running process whose log is its output: a timer it cannot
fire is said at once, in a warning line, and again in its error line when it is stopped. The
error line of a timer whose actor's state needs a module ``vactor`` cannot import said what to
do (put the module's directory on PYTHONPATH); the warning line, the one an operator watching
the process sees, named the missing module alone. It says what to do as well now.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from child_processes import vactor_child
from test_review_h202_cli_unimportable_state import shelf  # noqa: F401 - the fixture

from vactor_cloud.cli import EXIT_ERROR

ROOT = Path(__file__).resolve().parent.parent
HANG = 60.0


def test_timers_run_warns_of_a_timer_it_cannot_fire_with_what_to_do(shelf: str) -> None:  # noqa: F811
    # (not the program's src on its PYTHONPATH: h202_shelf is not importable there)
    proc = vactor_child(shelf, "timers", "run", "--poll", "0.2", pythonpath=[str(ROOT)])
    lines: list[str] = []
    warned = threading.Event()

    def read(stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.append(line)
            if line.startswith("vactor: WARNING") and "h202_shelf" in line:
                warned.set()
                return

    try:
        assert proc.stderr is not None
        reader = threading.Thread(target=read, args=(proc.stderr,), daemon=True)
        reader.start()
        assert warned.wait(HANG), lines
        proc.send_signal(signal.SIGTERM)
        reader.join(HANG)
        _, rest = proc.communicate(timeout=HANG)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(HANG)
    warning = lines[-1]
    assert "shelf/" in warning and "No module named 'h202_shelf'" in warning, warning
    assert "PYTHONPATH" in warning, warning
    assert proc.returncode == EXIT_ERROR, rest
    assert "PYTHONPATH" in rest.splitlines()[-1], rest  # (the error line said it already)
