"""Fixtures of this suite. The store fixtures (``store_spec``, ``actor_store``, ...) come from the
vactor_cloud pytest plugin (entry point ``pytest11``), loaded because the package is installed."""

from __future__ import annotations

import collections
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from interrupts import Interrupted

import vactor_cloud as vc
from vactor_cloud.testing.lanes import Lane, StoreSpec
from vactor_cloud.testing.pytest_plugin import LANE_NAMES, selected_lanes

#: the CLI tests' fixtures (``store``, ``vactor``): one harness for test_cli_edges and test_review_cli;
#: ``spec`` (a store, the runtime shut down after) for the tests that start their runtime themselves;
#: and pytest's ``pytester``, for the tests of the suite's fixtures
pytest_plugins = ("cli_harness", "store_helpers", "pytester")


@pytest.fixture
def shared(store_spec: StoreSpec, store_lane: Lane) -> Iterator[StoreSpec]:
    """``actor_store`` for tests where several OS processes share the store (skips memory)."""
    if not store_lane.multiprocess:
        pytest.skip(f"{store_lane.name} stores live in one process")
    store_spec.init()
    try:
        yield store_spec
    finally:
        vc.shutdown()


#: Modules that run on every lane. The second S3 server (LocalStack) and the GCS emulator
#: run these only: the shipped conformance suite (every store behaves alike), the
#: backend-specific files, the runtime's API end to end, and the suites whose promise is
#: "on every backend" (the execution model's points, SIGKILL, injected faults, idempotency
#: across processes, the examples). Every other test exercises the runtime above the store interface, which
#: the conformance suite pins: it runs on memory, local and moto (one real S3 server).
#: ``VACTOR_FULL_MATRIX=1`` runs every test on every selected lane.
EVERY_LANE_MODULES = frozenset(
    {
        "test_store_conformance",
        "test_s3_backend",
        "test_gcs_backend",
        "test_runtime_api",
        "test_execution_model",
        "test_wire_faults",
        "test_review_h139_listing",
        "test_review_h156_inbox_deletes",
        "test_review_h156_store_deletes",
        "test_crash",
        "test_chaos",
        "test_idempotency",
        "test_examples",
        "test_review_backends",
        "test_review_storage_faults",
        "test_review_h134_gcs",
    }
)
#: Modules whose subject is the runtime's own logic above the store interface, with no request
#: pattern of their own worth a real S3 server: the API's and the user's edges, class identity,
#: the actor cache, delete under injected faults, outcome objects, emptied logs, the clean
#: room's rules, history, workflows, signing. They run on memory and local; on moto each test
#: cost 2-4 times its local time in CPU (botocore and the server, per request), and the first 20
#: modules 350 s of the suite's 2,780 test-seconds, for nothing the conformance suite, the
#: backend files and the many-process modules that stay on moto do not already pin there.
ABOVE_THE_STORE_MODULES = frozenset(
    {
        "test_review_cli_silent_commands",
        "test_review_history_gap",
        "test_pickled_names",
        "test_review_h164_cli_sweep",
        "test_review_h157_local_store",
        "test_review_h166_local_listing_versions",
        "test_review_h166_wrapper_capabilities",
        "test_review_h177_conformance_sweep",
        "test_review_h166_local_delete_locks",
        "test_review_h166_runtime_bounds",
        "test_review_h165_call_queue",
        "test_review_h165_child_reports",
        "test_review_h165_sweep",
        "test_review_h160_runtime_sweep",
        "test_review_h161_s3_answers",
        "test_review_h161_s3_transports",
        "test_review_h161_open_store",
        "test_review_h153_creation_hand_over",
        "test_review_h159_creation_locals",
        "test_review_h153_handle_copy",
        "test_review_h153_repair_shared_failure",
        "test_review_h131_class_tags",
        "test_review_h131_lease_give_up",
        "test_review_h133_lease_at_shutdown",
        "test_review_h133_orphan_checkpoints",
        "test_review_h133_outcome_reads",
        "test_review_h135_future_copies",
        "test_review_h141_future_memory",
        "test_review_h143_future_reads",
        "test_review_h209_read_result_copy",
        "test_review_h141_fork_readonly",
        "test_review_h141_fork_subtask",
        "test_review_h143_fork_kept",
        "test_review_h143_reads_cut_short",
        "test_review_h145_heartbeat_cut_short",
        "test_review_h145_deadline_text",
        "test_review_h145_torn_head",
        "test_review_h145_timeout_passed_through",
        "test_review_h143_sent_note",
        "test_review_h138_execution_model",
        "test_review_h135_lease_shutdown",
        "test_review_h184_lease_release_at_shutdown",
        "test_review_h185_outcome_edges",
        "test_review_h188_unpinned_guards",
        "test_review_h137_lease_take",
        "test_review_h131_tick_stop",
        "test_review_h140_subtask",
        "test_review_h140_timers",
        "test_review_h140_workflow_steps",
        "test_review_h131_history_pages",
        "test_review_h131_commit_notes",
        "test_review_actor_cache",
        "test_delete_faults",
        "test_review_warm_after_delete",
        "test_dedup_outcome_objects",
        "test_review_outcome_objects_attacks",
        "test_review_limits",
        "test_review_emptied_log",
        "test_review_infra_outcomes",
        "test_review_input_edges",
        "test_review_user_edges",
        "test_review_api",
        "test_review_pickled_handles",
        "test_review_class_identity",
        "test_review_refusal_gaps",
        "test_review_deleted_leftovers",
        "test_review_step_prerequisites",
        "test_review_folding_round_errors",
        "test_review_class_tag_collision",
        "test_review_delete_under_a_folder",
        "test_call_edges",
        "test_hostile_review",
        "test_ray_variants",
        "test_clean_room_rules",
        "test_clean_room_events_timers",
        # (a second batch, after a CI run of 667 s and a clean checkout's 632 s)
        "test_shutdown_async_work",
        "test_review_delete_keys",
        "test_review_outcome_lookup",
        "test_clean_room_protocol",
        "test_delete_surfaces",
        "test_runtime_classes",
        "test_dedup_checkpoints",
        "test_subtask",
        "test_review_reads_beside_compaction",
        "test_review_timers_events",
        "test_signing",
        "test_outcomes_by_value",
        "test_review_user_gaps",
        "test_review_lease_churn",
        "test_review_class_bodies",
        "test_review_compaction_damage",
        "test_review_incarnation_keys",
        "test_history",
        "test_review_compaction_guard",
        "test_review_subtask_shutdown",
        "test_review_workflow",
        "test_review_nested_pending",
        "test_workflow_steps",
        "test_stats",
        "test_review_h136_compact_listing",
        "test_review_h137_compact_hooks",
        "test_review_h142_reads_cut_short",
        "test_review_h142_cli_chunks",
        "test_review_h144_cli_chunks",
        "test_review_h144_timeout_log",
        "test_review_h144_fork_in_init",
        "test_review_h144_repair_listing",
        "test_review_h146_cancel_in_creation",
        "test_review_h146_cli_chunk_edges",
        "test_review_h146_fork_init",
        "test_review_h146_repair_listing",
        "test_review_h149_codec",
        "test_review_h149_refused_connection",
        "test_review_h151_async_executor",
        "test_review_h151_failed_creation_memory",
        "test_review_h151_reset_after_sending",
        "test_review_h149_deadline_reason",
        "test_review_h149_cli_compact_interrupt",
        "test_review_h153_cli_compact_after_the_last_batch",
        "test_review_h149_timeout_answers",
        "test_review_h150_ready_after_failed_creation",
        "test_review_h150_repair_failures",
        "test_review_h150_resume_stray_step",
        "test_review_h150_fork_in_thread",
        "test_review_h150_fork_in_state_hooks",
        "test_review_h147_event_waits",
        "test_review_h147_inbox_sweep",
        "test_review_h147_listing_overlap",
        "test_review_h148_compaction_sweep",
        "test_review_h148_dedup_table",
        "test_review_h148_incarnations",
        "test_review_h148_outcomes",
        "test_review_h154_listing_turns",
        "test_review_h158_checked_reads",
        "test_review_h158_read_room",
        "test_review_h158_sync_bridge",
        "test_review_h158_worker_pool",
        "test_review_h163_timer_runner",
        "test_review_h158_workflow_resume",
        "test_review_h152_lease_store",
        "test_review_h152_state_capture",
        "test_review_h152_names_and_classes",
        "test_review_h167_local_versions_read",
        "test_review_h167_local_plain_deletes",
        "test_review_h171_timer_runner",
        "test_review_h171_cli",
        "test_review_h169_bench_sweep",
        "test_review_bench_ready",
        "test_review_h170_batch_sweep",
        "test_review_h228_workflow_sweep",
        "test_review_h230_call_surface_sweep",
        "test_review_h172_timer_claims",
        "test_review_h176_timer_runner",
        "test_review_h176_bench",
        "test_review_h176_cli",
        "test_review_h179_tick_renewals",
        "test_review_h186_partialmethod_marks",
        "test_review_h202_cli_unimportable_state",
        "test_review_h202_timers_ls_lateness",
        "test_review_h202_cli_call_arguments",
        "test_review_h203_subtask_interrupts",
        "test_review_h203_read_copy_message",
        "test_review_h203_timers_run_advice",
        "test_review_h211_memory_bounds",
        "test_review_h219_forked_child",
        "test_review_h229_sweep",
        "test_review_h231_commit_side_sweep",
        "test_review_h232_sweep",
        "test_review_h236_sweep",
        "test_review_h240_sweep",
        "test_review_h241_sweep",
        "test_review_h242_sweep",
        "test_review_h243_sweep",
        "test_review_h244_sweep",
        # ``call_outcome``'s logic (the walk of the steps, the background fold of a given-up
        # post, an id made again) and the signed store's checks of what it reads: the same
        # store calls as the posting and folding paths test_combining keeps on moto. Measured
        # on 2026-12-07 (CPU of each test, its worker's and its moto server's): 59 s of the
        # moto lane's 292 s and 326 worker-seconds, the first of them 31 s and 172 alone.
        "test_review_h179_given_up_fold",
        "test_review_h195_outcome_recreated",
        "test_review_signed_store_forgeries",
        "test_review_h178_orphaned_post",
        "test_review_h194_outcome_after_delete",
        "test_review_h183_outcome_not_found",
        "test_review_h181_ask_processes",
    }
)
#: Lanes that run only :data:`EVERY_LANE_MODULES` (unless ``VACTOR_FULL_MATRIX=1``).
CONFORMANCE_ONLY_LANES = frozenset({"fakegcs", "localstack"})
#: Contention combining's many-process scenarios (SIGKILL at each point, every process a
#: holder, posters giving up) run on local; on moto the cross-process suite keeps its
#: hammering, lost-response and compaction scenarios and every single-process one.
LOCAL_PROCESSES_ONLY = frozenset(
    {
        "test_a_process_killed_at_each_point_of_posting_and_folding_loses_and_duplicates_nothing",
        "test_processes_that_all_believe_they_hold_the_lease_apply_each_call_once_in_order",
        "test_posters_that_give_up_get_call_pending_and_their_calls_apply_at_most_once",
    }
)
#: The CLI is the same code on every store (each command a subprocess paying a cold start):
#: on moto it runs the commands whose S3 path differs (storage options and the environment,
#: an unreachable endpoint, a proxy, doctor, timers' heartbeat); the rest runs on local.
CLI_ON_MOTO = frozenset(
    {
        "test_every_command_takes_storage_from_the_option_or_the_environment",
        "test_unknown_storage_options_are_usage_errors_naming_the_valid_ones",
        "test_unreachable_storage_is_exit_4_with_a_hint",
        "test_doctor_passes_on_a_store_that_keeps_its_promises",
        "test_doctor_says_plainly_when_a_proxy_drops_the_conditional_headers",
        "test_call_runs_writers_and_readers_with_json_arguments",
        "test_timers_run_stops_on_sigterm_and_deletes_its_heartbeat",
    }
)


def pytest_configure(config: pytest.Config) -> None:
    """SIGINT as an interactive program has it, however the suite was started.

    A job a shell starts in the background (``bash scripts/test.sh &``, ``nohup``) begins with
    SIGINT ignored, and Python then keeps it ignored. The suite's Ctrl-C tests (and the child
    processes they start, which inherit it) then saw no Ctrl-C at all: three of them failed
    whenever the check ran in the background (and ``vactor call`` took a method's own
    KeyboardInterrupt for one, fixed in the CLI). This process is the pytest worker's own."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _unselected_lane(item: pytest.Item, selected: set[str]) -> bool:
    """Whether the item is pinned (by any fixture parameter) to a server lane not selected.

    Tests that need one emulator whatever the selection (``moto_store`` params, pinned
    ``store_lane``) would otherwise start it under ``--quick`` (lanes memory and local).
    """
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return False
    return any(
        isinstance(value, str) and value in LANE_NAMES and value not in selected
        for value in callspec.params.values()
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    full_matrix = os.environ.get("VACTOR_FULL_MATRIX", "").strip() not in ("", "0")
    selected = set(selected_lanes(config))
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        lane = callspec.params.get("store_lane") if callspec is not None else None
        module_obj = getattr(item, "module", None)
        module = module_obj.__name__.rpartition(".")[2] if module_obj is not None else ""
        name = getattr(item, "originalname", "")
        trimmed = not full_matrix and (
            (lane in CONFORMANCE_ONLY_LANES and module not in EVERY_LANE_MODULES)
            or (module == "test_cli" and lane == "moto" and name not in CLI_ON_MOTO)
            or (lane == "moto" and (name in LOCAL_PROCESSES_ONLY or module in ABOVE_THE_STORE_MODULES))
        )
        if trimmed or _unselected_lane(item, selected):
            dropped.append(item)
        else:
            keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@pytest.fixture
def forked_children_reaped() -> Iterator[list[int]]:
    """The children ``os.fork`` makes in the test, reaped after it (``forking.children_reaped``)."""
    from forking import children_reaped

    with children_reaped() as forked:
        yield forked


@pytest.fixture
def brief_assertion_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    """pytest out of its CI mode for the test: for tests that make assertions fail on purpose and
    keep only the start of the message. In CI mode (``$CI`` or ``$BUILD_NUMBER`` set, as in
    scripts/test.sh's CI runs) a failed ``==`` of two sequences also computes their full
    ``difflib`` diff: for two 4 KiB byte strings, 16-30 s of CPU."""
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("BUILD_NUMBER", raising=False)


@pytest.fixture
def runtime_off() -> Iterator[None]:
    """Shuts the runtime down after a test that starts it itself."""
    try:
        yield
    finally:
        vc.shutdown()


@pytest.fixture
def ctrl_c() -> Iterator[Callable[[threading.Event], None]]:
    """``ctrl_c(event)``: once ``event`` is set, SIGINT reaches the main thread, where it raises
    :class:`Interrupted` (as Ctrl-C raises KeyboardInterrupt): once per call of ``ctrl_c``.

    The signal is sent again (every 0.2 s, for 60 s at most) until its handler ran: one that
    lands just as the main thread enters a blocking wait (after the interpreter's last look,
    before the syscall) is only handled when that wait returns. A delivery once the arm was
    handled (a resend already on its way) raises nothing; a SIGINT before the fixture sent any
    (Ctrl-C at the terminal) raises KeyboardInterrupt. Skips where signals cannot be aimed at
    the main thread, or the test does not run there."""
    if not hasattr(signal, "pthread_kill") or threading.current_thread() is not threading.main_thread():
        pytest.skip("needs signals delivered to the main thread")
    #: one "handled" event per arm whose event is set, oldest first (deque: thread-safe)
    due: collections.deque[threading.Event] = collections.deque()
    sent = threading.Event()  # a signal of ours may still arrive
    done = threading.Event()
    senders: list[threading.Thread] = []

    def on_sigint(signum: int, frame: object) -> None:
        if done.is_set():  # the test is over: a last resend
            return
        while due:
            handled = due.popleft()
            if not handled.is_set():
                handled.set()
                raise Interrupted
        if not sent.is_set():
            raise KeyboardInterrupt

    def when(event: threading.Event) -> None:
        def interrupt() -> None:
            until = time.monotonic() + 60.0
            while not event.wait(0.05):
                if done.is_set() or time.monotonic() > until:
                    return
            handled = threading.Event()
            due.append(handled)
            while not done.is_set() and time.monotonic() < until:
                sent.set()
                signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
                if handled.wait(0.2):
                    return

        sender = threading.Thread(target=interrupt, name="ctrl_c", daemon=True)
        senders.append(sender)
        sender.start()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield when
    finally:
        done.set()
        for sender in senders:  # none sends once the suite's handler is back
            sender.join(5.0)
        signal.signal(signal.SIGINT, previous)
