"""Library CPU per sequential commit on the memory store (issue 11's row, as docs/performance.md ran it).

    python scripts/bench_cpu.py          # prints microseconds of process CPU per run() commit

4,000 sequential ``run()`` commits of one warm actor after 500 warm-up calls;
``time.process_time()`` counts every thread of the process (the IO loop's too).
Run it with ``PYTHONPATH=<another checkout>`` to compare versions in one session.
"""

import time

import vactor_cloud as vc


@vc.virtual_actor
class C:
    def __init__(self) -> None:
        self.v = 0

    def incr(self) -> int:
        self.v += 1
        return self.v


vc.init("memory://cpu")
h = C.get_or_create("c")
for _ in range(500):
    h.incr.run()
N = 4000
t0 = time.process_time()
for _ in range(N):
    h.incr.run()
print(f"{1e6 * (time.process_time() - t0) / N:.0f}")
vc.shutdown()
