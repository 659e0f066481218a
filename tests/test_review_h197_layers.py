"""Review h197: the modules carved out of the actor core stay below it, each part of
``ActorCore`` over the one it builds on (``test_layers`` holds the package's rules; these are
the carved modules' own)."""

from __future__ import annotations

from test_layers import ABOVE_THE_CORE, _imports, _modules

#: ``ActorCore``'s bases, lowest first: each imports the one below it, none one above it
BASES = ("poster", "folding", "after_commit", "step_attempt", "attempt_stops", "committer", "holding", "core")


def _imports_of(part: str) -> set[str]:
    modules = _modules()
    name = f"vactor_cloud.{part}"
    return _imports(name, modules[name], set(modules))


def test_the_modules_carved_out_of_the_core_do_not_reach_up_to_handles_events_or_the_runtime() -> None:
    for part in (
        "commit_env",
        "batch_commit",
        "after_commit",
        "step_attempt",
        "attempt_stops",
        "committer",
        "holding",
        "reentrancy",
        "commit_notes",
    ):
        assert not _imports_of(part) & ABOVE_THE_CORE, part


def test_each_part_of_the_actor_core_builds_on_the_one_below_and_never_imports_one_above() -> None:
    for index, part in enumerate(BASES):
        imports = _imports_of(part)
        above = {f"vactor_cloud.{p}" for p in BASES[index + 1 :]}
        assert not imports & above, (part, imports & above)
        if index:
            assert f"vactor_cloud.{BASES[index - 1]}" in imports, part


def test_the_wait_cycle_refusal_and_the_commit_notes_sit_below_the_core() -> None:
    """What refuses a call that would wait for itself, and the notes a commit's exceptions
    carry, know the core only through what they are given (a small protocol, an actor id)."""
    for part in ("reentrancy", "commit_notes"):
        assert not _imports_of(part) & {f"vactor_cloud.{p}" for p in BASES}, part
