"""Review h197: the modules carved out of the actor core stay below it (``test_layers`` holds
the package's rules; this adds the carved modules' own)."""

from __future__ import annotations

from test_layers import _imports, _modules


def test_the_wait_cycle_refusal_and_the_commit_notes_sit_below_the_core() -> None:
    """What refuses a call that would wait for itself, and the notes a commit's exceptions
    carry, know the core only through what they are given (a small protocol, an actor id)."""
    modules = _modules()
    known = set(modules)
    for part in ("reentrancy", "commit_notes"):
        name = f"vactor_cloud.{part}"
        assert not _imports(name, modules[name], known) & {
            "vactor_cloud.core",
            "vactor_cloud.committer",
            "vactor_cloud.folding",
            "vactor_cloud.poster",
        }, name
