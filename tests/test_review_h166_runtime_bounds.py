"""Two mutations h160's runtime sweep left unpinned, now pinned (review-h166).

M15: the cache's byte bound off by one (``_evict``'s ``<=`` made ``<``): an eviction that
brought the cache back to exactly ``Settings.max_cache_bytes`` went on evicting the next idle
actor. The bound is "at most" (settings.py): exactly the bound is within it, one byte more is
not. (The same mutation of the checks that call ``_evict``, ``weigh``'s and ``core()``'s ``>``
made ``>=``, is equivalent: ``_evict`` returns at once when within both bounds.)
M11: see the test's docstring below. Each test failed with its mutation applied.
"""

from __future__ import annotations

import pytest

import vactor_cloud as vc
from vactor_cloud import runtime as runtime_module
from vactor_cloud.testing.lanes import StoreSpec

pytestmark = pytest.mark.vactor_lanes("memory", "local")


@pytest.mark.usefixtures("runtime_off")
def test_a_cache_evicts_down_to_exactly_its_byte_bound_and_no_further(store_spec: StoreSpec) -> None:
    store_spec.init(settings=vc.Settings(max_cache_bytes=1000))
    runtime = runtime_module.get_runtime()
    older, newer = runtime.core("older"), runtime.core("newer")  # (idle: nothing queued)
    runtime.weigh(older, 1)
    runtime.weigh(newer, 999)
    arriving = runtime.core("arriving")  # (weighs nothing yet: the cache is at its bound)
    assert runtime.cached() == (3, 1000)
    assert runtime.in_cache(older) and runtime.in_cache(newer)
    runtime.weigh(arriving, 1)  # one byte past: the least recently used idle one goes...
    assert not runtime.in_cache(older)
    assert runtime.in_cache(newer), "evicted though the cache was back at its bound"  # ...alone
    assert runtime.cached() == (2, 1000)
