"""A second implementation of the storage protocol, written from docs/protocol.md alone.

It exists to test that page's claim ("precisely enough for a second implementation"):
it imports nothing of vactor_cloud but the ``ObjectStore`` interface it talks through
(or, on a local directory, nothing at all: ``stores.LocalFiles`` reads the files), and
``tests/test_clean_room_protocol.py`` (steps, HEAD, posts, folds, compaction) and
``tests/test_clean_room_events_timers.py`` (events, timers, keyed folds, sub-task
checkpoints, deleting) check that the library and it understand each other.

Modules: ``envelope``, ``stores``, ``actor_log`` (steps, tables, compaction, creation),
``posts`` and ``folder`` (posting and folding), ``inbox`` (events), ``timers``,
``subtasks`` and ``deletion``.
"""
