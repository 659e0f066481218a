"""A mutation sweep of the shipped store conformance suite (``vactor_cloud.testing.store_conformance``).

The suite is worth what it catches: a store that breaks the contract (``ObjectStore``'s
docstrings, docs/protocol.md "Store requirements") must fail it. Each mutant below is the memory
store (or the local store) with one break a third-party backend plausibly has; each test runs
the suite's named case against it, programmatically, and asserts that the case fails, and the
controls assert that the plain stores pass the same cases through the same harness.

``PYTHONPATH=. python tests/test_review_h177_conformance_sweep.py [MUTANT...]`` runs every case of the suite
against every mutant (or those named) and prints which cases fail: so the table below was made
(2026-12-07; cases named without their ``test_``). ``*``: the mutant passed the whole suite as
it was before this review (main at c191228), 23 of 90; the case that now catches it was added
or strengthened here. (Two of them were caught by the old suite in some runs, not others: the
torn read, whose writer could finish before the reader read, and the non-atomic conditional
delete, whose race the deleters could run in step.) Every mutant now fails at least one case;
none is equivalent (each breaks a clause of the contract or a claim the runtime relies on).

  CreateOverwrites: create-only put overwrites an existing object
    -> killed by 5: create_refuses_existing_key_and_keeps_its_bytes;
       errors_are_vactor_errors_naming_the_key; large_object_round_trips[create]; +2 more
  CreateConflictIsPreconditionFailed: a create conflict raised as PreconditionFailedError, not
    AlreadyExistsError
    -> killed by 6: create_refuses_existing_key_and_keeps_its_bytes;
       errors_are_vactor_errors_naming_the_key; large_object_round_trips[create]; +3 more
  CreateConflictIsRetryable: a create conflict raised as RetryableStorageError (a 409 taken for
    a transient one)
    -> killed by 6: create_refuses_existing_key_and_keeps_its_bytes;
       errors_are_vactor_errors_naming_the_key; large_object_round_trips[create]; +3 more
  CreateConflictIsPlainError: a create conflict raised as a plain RuntimeError
    -> killed by 6: create_refuses_existing_key_and_keeps_its_bytes;
       errors_are_vactor_errors_naming_the_key; large_object_round_trips[create]; +3 more
  CreateConflictNamesNoKey: a create conflict that does not name the key
    -> killed by 2: errors_are_vactor_errors_naming_the_key;
       racing_threads_create_exactly_one_winner
  CreateConflictStillWrites: a refused create has written its bytes all the same
    -> killed by 4: create_refuses_existing_key_and_keeps_its_bytes;
       racing_conditional_deletes_never_delete_an_object_created_meanwhile;
       racing_threads_create_exactly_one_winner; +1 more
  CreateNotAtomic: create checks that the key is free, then writes (racing creators both win)
    -> killed by 1: racing_threads_create_exactly_one_winner
  IfMatchIgnored: an if-match put overwrites whatever the version
    -> killed by 7: a_key_that_only_prefixes_others_names_no_object;
       errors_are_vactor_errors_naming_the_key; if_match_on_missing_key_is_refused; +4 more
  IfMatchOnMissingKeyCreates: an if-match put on a missing key creates it
    -> killed by 2: a_key_that_only_prefixes_others_names_no_object;
       if_match_on_missing_key_is_refused
  IfMatchAcceptsAnyPastVersion: an if-match put succeeds against any version the key ever had (a
    stale one too)
    -> killed by 4: errors_are_vactor_errors_naming_the_key;
       if_match_with_stale_version_is_refused; racing_if_match_writers_exactly_one_wins; +1 more
  IfMatchConflictIsAlreadyExists: an if-match conflict raised as AlreadyExistsError
    -> killed by 7: a_key_that_only_prefixes_others_names_no_object;
       errors_are_vactor_errors_naming_the_key; if_match_on_missing_key_is_refused; +4 more
  IfMatchConflictIsRetryable: an if-match conflict raised as RetryableStorageError
    -> killed by 6: a_key_that_only_prefixes_others_names_no_object;
       errors_are_vactor_errors_naming_the_key; if_match_on_missing_key_is_refused; +3 more
  IfMatchNotAtomic: if-match reads the version, then writes (racing writers of one version both
    win)
    -> killed by 1: racing_if_match_writers_exactly_one_wins
  PutReturnsOldVersion: put answers the version the object had before (the new one is stored)
    -> killed by 8: if_match_with_current_version_succeeds_with_new_version;
       if_match_with_stale_version_is_refused; large_object_round_trips[if-match]; +5 more
  VersionIsContentHash: versions are a digest of the bytes (S3's plain ETag): A, B, A again
    repeats a version
    -> killed by 5: a_listed_version_changes_when_its_object_is_replaced;
       delete_unchanged_deletes_only_objects_still_at_their_version;
       delete_unchanged_sent_again_leaves_the_object_created_in_between; +2 more
  VersionRestartsAfterDelete: versions count the writes of a key, from 1 again once it is
    deleted
    -> killed by 5: a_listed_version_changes_when_its_object_is_replaced;
       delete_unchanged_deletes_only_objects_still_at_their_version;
       delete_unchanged_sent_again_leaves_the_object_created_in_between; +2 more
  VersionCountedPerClient: versions counted by each store object from 1 (two clients hand out
    the same ones)
    -> killed by 4: a_listed_version_changes_when_its_object_is_replaced;
       racing_conditional_deletes_never_delete_an_object_created_meanwhile;
       racing_conditional_deletes_never_delete_an_object_written_meanwhile; +1 more
  VersionIsAnInt: put answers its version as an int
    -> killed by 29: a_key_that_only_prefixes_others_names_no_object;
       a_listed_version_changes_when_its_object_is_replaced;
       create_refuses_existing_key_and_keeps_its_bytes; +26 more
  HeadVersionDiffersFromGet: head's version is spelt otherwise than get's (a quoted ETag on one,
    bare on the other)
    -> killed by 16: delete_unchanged_deletes_only_objects_still_at_their_version;
       delete_unchanged_sent_again_leaves_the_object_created_in_between;
       empty_object_exists_and_reads_empty; +13 more
  HeadOfMissingRaises: head of a missing key raises NotFoundError instead of answering None
    -> killed by 18: a_key_that_only_prefixes_others_names_no_object;
       delete_many_deletes_every_key_and_nothing_else; delete_removes_object; +15 more
* GetAnswersFirstVersion: get answers the current bytes with the key's first version
    -> killed by 1: overwrite_replaces_bytes_and_version
  GetCutShortPastOneMiB: get of an object over 1 MiB returns all but its last byte (a partial
    read)
    -> killed by 4: large_object_round_trips[overwrite]; large_object_round_trips[create];
       large_object_round_trips[if-match]; +1 more
  PutTruncatesPastFourMiB: put keeps the first 4 MiB of a larger object
    -> killed by 4: large_object_round_trips[overwrite]; large_object_round_trips[create];
       large_object_round_trips[if-match]; +1 more
  GetOfMissingIsEmpty: get of a missing key answers b'' instead of NotFoundError
    -> killed by 4: a_key_that_only_prefixes_others_names_no_object; delete_removes_object;
       errors_are_vactor_errors_naming_the_key; +1 more
  GetOfMissingIsRetryable: get of a missing key raises RetryableStorageError (a 404 taken for a
    transient one)
    -> killed by 4: a_key_that_only_prefixes_others_names_no_object; delete_removes_object;
       errors_are_vactor_errors_naming_the_key; +1 more
  GetOfMissingIsBuiltin: get of a missing key raises the builtin FileNotFoundError
    -> killed by 4: a_key_that_only_prefixes_others_names_no_object; delete_removes_object;
       errors_are_vactor_errors_naming_the_key; +1 more
  NotFoundDoesNotPickle: a backend's own NotFoundError subclass that does not survive pickling
    -> killed by 1: errors_are_vactor_errors_naming_the_key
* TornRead: get reads an object in two halves, a write may land between them
    -> killed by 1: reader_never_sees_a_partial_object
  BytesDecodedAsText: object bytes pass through a text decode (invalid UTF-8 replaced)
    -> killed by 5: binary_data_round_trips_byte_for_byte; large_object_round_trips[overwrite];
       large_object_round_trips[create]; +2 more
  NewlinesNormalized: CRLF in object bytes stored as LF (a text-mode write)
    -> killed by 1: binary_data_round_trips_byte_for_byte
  EmptyObjectNotListed: an empty object is stored but left out of listings
    -> killed by 5: a_listed_version_changes_when_its_object_is_replaced;
       a_listing_after_a_key_asks_the_store_to_start_there;
       a_listing_of_several_pages_is_not_reported_as_one_moment; +2 more
  HeadOfEmptyIsNone: head of an empty object answers None (its bytes taken for its existence)
    -> killed by 1: empty_object_exists_and_reads_empty
* GetAnswersBytearray: get answers a bytearray, not bytes
    -> killed by 1: put_get_head_round_trip
  GetAnswersMemoryview: get answers a memoryview of the bytes, not bytes
    -> killed by 2: put_get_head_round_trip; reader_never_sees_a_partial_object
  KeySpacesReplaced: keys stored with spaces as '+' (a form-encoded URL)
    -> killed by 4: delete_many_takes_the_keys_vactor_cloud_writes_verbatim;
       store_behaves_like_a_dict_model; unusual_keys_round_trip_and_list_verbatim[with space/and
       more spaces.bin]; +1 more
  KeyNormalizedNFD: keys stored decomposed (NFD: a normalizing file system)
    -> killed by 4: delete_many_takes_the_keys_vactor_cloud_writes_verbatim;
       keys_as_long_as_the_runtime_writes_round_trip_distinct; store_behaves_like_a_dict_model;
       +1 more
  KeyPercentDecoded: keys percent-decoded once (a URL built without quoting)
    -> killed by 1: unusual_keys_round_trip_and_list_verbatim[percent/%20%2F%zz]
* KeyCutAtQueryCharacters: keys cut at '?' or '#' (a URL built without quoting: the rest is a
    query or fragment)
    -> killed by 1: unusual_keys_round_trip_and_list_verbatim[query/a?b=c&d#e?f]
  KeyCaseFolded: keys stored lower-cased (a case-insensitive backend)
    -> killed by 2: delete_many_takes_the_keys_vactor_cloud_writes_verbatim;
       unusual_keys_round_trip_and_list_verbatim[percent/%20%2F%zz]
* KeyComponentsCutAt200Bytes: each key component cut to 200 bytes (a file-name limit met
    silently)
    -> killed by 1: keys_as_long_as_the_runtime_writes_round_trip_distinct
* KeyComponentsTrimmed: spaces at either end of a key component trimmed (a file system or a form
    field)
    -> killed by 1: unusual_keys_round_trip_and_list_verbatim[edges/ both ends /trailing ]
  PutSkipsTheKeyCheck: put overridden whole (not its hook): an absolute key is stored, not
    refused
    -> killed by 4: empty_and_absolute_keys_are_refused_before_any_request[];
       empty_and_absolute_keys_are_refused_before_any_request[/];
       empty_and_absolute_keys_are_refused_before_any_request[/abs]; +1 more
* KeyCheckWithoutUtf8: the key check overridden (a backend adding a rule of its own) without the
    base class's UTF-8 check: a key with a lone surrogate is stored
    -> killed by 1: keys_that_are_no_utf8_text_are_refused_before_any_request
* LongKeysRefused: keys over 300 bytes refused with StorageError, while max_key_bytes claims no
    limit
    -> killed by 1: keys_as_long_as_the_runtime_writes_round_trip_distinct
  NestedKeysClaimedButRefused: nested_keys True, but a key cannot be both an object and a prefix
    of others
    -> killed by 46: a_key_that_only_prefixes_others_names_no_object;
       a_listed_version_changes_when_its_object_is_replaced;
       a_listing_after_a_key_asks_the_store_to_start_there; +43 more
  LocalNestedKeysClaimed: the local store claiming nested_keys True (a filesystem cannot hold
    "a" and "a/b")
    -> killed by 2: delete_removes_object; key_and_keys_under_it_coexist
  ListIgnoresStartAfter: list ignores start_after
    -> killed by 3: a_listing_after_a_key_asks_the_store_to_start_there;
       list_sees_writes_and_deletes_of_another_client; list_start_after_and_limit
  ListIncludesStartAfter: list includes the key start_after names
    -> killed by 3: a_listing_after_a_key_asks_the_store_to_start_there;
       list_sees_writes_and_deletes_of_another_client; list_start_after_and_limit
  ListUnsorted: list answers keys in reverse order
    -> killed by 12: a_listed_version_changes_when_its_object_is_replaced;
       a_listing_of_several_pages_is_not_reported_as_one_moment;
       delete_many_deletes_every_key_and_nothing_else; +9 more
  ListInWriteOrder: list answers keys in the order they were first written (a hash map's order)
    -> killed by 7: a_listed_version_changes_when_its_object_is_replaced; delete_removes_object;
       delete_unchanged_deletes_only_objects_still_at_their_version; +4 more
  ListIgnoresLimit: list ignores limit
    -> killed by 2: a_listing_after_a_key_asks_the_store_to_start_there;
       list_start_after_and_limit
  ListLimitOneOver: list answers one key more than limit
    -> killed by 2: a_listing_after_a_key_asks_the_store_to_start_there;
       list_start_after_and_limit
  ListIgnoresPrefix: list answers every key from the prefix on, under it or not
    -> killed by 3: a_listed_version_changes_when_its_object_is_replaced;
       a_listing_reported_as_one_moment_never_shows_a_write_without_an_earlier_one;
       list_is_sorted_recursive_and_prefix_filtered
  ListPrefixAsDirectory: list of "a" answers only keys under "a/" (a directory, not a string
    prefix)
    -> killed by 2: key_and_keys_under_it_coexist; list_is_sorted_recursive_and_prefix_filtered
  ListDropsLastPage: list pages of 5 keys and drops the last page when it is not full
    -> killed by 2: list_is_sorted_recursive_and_prefix_filtered; list_start_after_and_limit
  ListRepeatsAKey: list answers the first key of a page twice
    -> killed by 12: a_listed_version_changes_when_its_object_is_replaced;
       a_listing_of_several_pages_is_not_reported_as_one_moment;
       delete_many_deletes_every_key_and_nothing_else; +9 more
  ListFromOwnCache: list answers from the keys this store object wrote and deleted (a client-
    side cache)
    -> killed by 3: a_listed_version_changes_when_its_object_is_replaced;
       delete_unchanged_deletes_only_objects_still_at_their_version;
       list_sees_writes_and_deletes_of_another_client
  ListNamesNoVersions: list names no versions (a plain list)
    -> killed by 1: a_listed_version_changes_when_its_object_is_replaced
  ListNamesFirstVersions: list names each key's version as first listed (a cache that outlives a
    replacement)
    -> killed by 1: a_listed_version_changes_when_its_object_is_replaced
* ListNamesStaleVersionsOfObjectsNotRead: a listing names, for objects this store object never
    read, the version it first listed (right for the objects it read, as the local store's are)
    -> killed by 1: a_listed_version_changes_when_its_object_is_replaced
  ListShowsStoreOwnFiles: list answers the store's own bookkeeping key (a layout marker) as an
    object
    -> killed by 21: a_listed_version_changes_when_its_object_is_replaced;
       delete_many_deletes_every_key_and_nothing_else;
       delete_many_of_missing_and_repeated_keys_is_not_an_error; +18 more
* ListStartAfterBeforePrefixFindsNothing: list with start_after sorting before the prefix
    answers nothing (start_after taken as a key under the prefix)
    -> killed by 1: list_start_after_and_limit
* ListPagesButClaimsOneMoment: list reads pages of 2 keys, releasing the store between them, and
    says one request (listed_at_one_moment True): a write meanwhile is seen without one made
    before it
    -> killed by 1: a_listing_reported_as_one_moment_never_shows_a_write_without_an_earlier_one
  ListPageBoundaryKeyLost: list reads pages of 3 keys, each next page starting one key too far
    (a continuation token taken for the next page's first key)
    -> killed by 8: a_listed_version_changes_when_its_object_is_replaced;
       a_listing_reported_as_one_moment_never_shows_a_write_without_an_earlier_one;
       delete_removes_object; +5 more
* InlineCreateOverwrites: put_now (the runtime's step commit) overwrites on mode="create"; put
    keeps the contract
    -> killed by 1: inline_requests_keep_the_contract_of_the_requests_they_stand_for
* InlineIfMatchIgnored: put_now ignores IfMatch
    -> killed by 1: inline_requests_keep_the_contract_of_the_requests_they_stand_for
* InlineGetAnswersFirstVersion: get_now answers the current bytes with the key's first version
    -> killed by 1: inline_requests_keep_the_contract_of_the_requests_they_stand_for
* InlineListIgnoresStartAfter: list_now ignores start_after
    -> killed by 1: inline_requests_keep_the_contract_of_the_requests_they_stand_for
* LocalInlineCreateOverwrites: the local store whose put_now overwrites on mode "create".
    -> killed by 1: inline_requests_keep_the_contract_of_the_requests_they_stand_for
* HeadOfAPrefixAnswersAVersion: head of a key that only prefixes others answers a version (a
    directory's stat)
    -> killed by 2: a_key_that_only_prefixes_others_names_no_object; delete_removes_object
* GetOfAPrefixIsNoNotFound: get of a key that only prefixes others raises StorageError, not
    NotFoundError (a filesystem's IsADirectoryError passed on as it is)
    -> killed by 2: a_key_that_only_prefixes_others_names_no_object; delete_removes_object
* DeleteOfAPrefixRaises: delete of a key that only prefixes others raises StorageError (rmdir of
    a full one)
    -> killed by 1: a_key_that_only_prefixes_others_names_no_object
* StaleTempRemovalDeletesObjects: remove_stale_temp_files removes every object under the prefix
    older than the age
    -> killed by 1: removing_stale_temp_files_never_touches_an_object
  LocalClaimsEveryListingOneMoment: the local store reporting every listing as one moment (it
    walks directories one after another: only a mailbox, one directory, is read at once)
    -> killed by 1: a_listing_of_several_pages_is_not_reported_as_one_moment
  GetFromOwnCache: get answers what this store object read or wrote at the key before (a client
    cache)
    -> killed by 2: delete_removes_object; reader_never_sees_a_partial_object
  HeadFromOwnCache: head answers the version this store object last saw at the key (a client
    cache)
    -> killed by 3: delete_unchanged_deletes_only_objects_still_at_their_version;
       delete_unchanged_sent_again_leaves_the_object_created_in_between;
       list_sees_writes_and_deletes_of_another_client
  DeleteUnchangedBatchChecksTheFirstKeyOnly: a batch conditional delete (delete_batch 3)
    compares the first key's version only and deletes every key of the batch when it matches
    -> killed by 1: delete_unchanged_deletes_only_objects_still_at_their_version
  WritesSentLater: a plain overwrite answers at once and reaches the store with this store
    object's next request (a write-behind client): this client reads its own writes, others do
    not yet
    -> killed by 18: a_key_that_only_prefixes_others_names_no_object;
       a_listed_version_changes_when_its_object_is_replaced;
       delete_many_of_missing_and_repeated_keys_is_not_an_error; +15 more
  DeleteOfMissingRaises: delete of a missing key raises NotFoundError
    -> killed by 4: a_key_that_only_prefixes_others_names_no_object;
       delete_many_of_missing_and_repeated_keys_is_not_an_error; delete_missing_is_not_an_error;
       +1 more
  DeleteDoesNothing: delete answers but deletes nothing
    -> killed by 20: a_listed_version_changes_when_its_object_is_replaced;
       create_after_delete_succeeds; delete_many_deletes_every_key_and_nothing_else; +17 more
* DeleteTakesAPrefix: delete of "k" deletes every key starting with "k" (a recursive remove)
    -> killed by 2: a_key_that_only_prefixes_others_names_no_object; delete_removes_object
  DeleteManySkipsTheLastKey: delete_many's batch request leaves its last key
    -> killed by 2: delete_many_deletes_every_key_and_nothing_else;
       delete_many_takes_the_keys_vactor_cloud_writes_verbatim
  DeleteManyOnlyTheFirstKey: delete_batch claims batches, but the batch request deletes its
    first key only
    -> killed by 3: delete_many_deletes_every_key_and_nothing_else;
       delete_many_of_missing_and_repeated_keys_is_not_an_error;
       delete_many_takes_the_keys_vactor_cloud_writes_verbatim
  DeleteManyStopsAtAMissingKey: delete_many's batch stops at the first key already gone
    -> killed by 1: delete_many_of_missing_and_repeated_keys_is_not_an_error
  DeleteUnchangedIgnoresVersion: delete_unchanged deletes whatever the version
    -> killed by 4: delete_unchanged_deletes_only_objects_still_at_their_version;
       delete_unchanged_sent_again_leaves_the_object_created_in_between;
       racing_conditional_deletes_never_delete_an_object_created_meanwhile; +1 more
  DeleteUnchangedDeletesNothing: delete_unchanged deletes nothing
    -> killed by 3: delete_unchanged_deletes_only_objects_still_at_their_version;
       delete_unchanged_sent_again_leaves_the_object_created_in_between;
       racing_conditional_deletes_never_delete_an_object_created_meanwhile
  DeleteUnchangedOfMissingRaises: delete_unchanged of a missing key raises NotFoundError
    -> killed by 4: a_key_that_only_prefixes_others_names_no_object;
       delete_unchanged_deletes_only_objects_still_at_their_version;
       racing_conditional_deletes_never_delete_an_object_created_meanwhile; +1 more
  DeleteUnchangedOfOtherVersionRaises: delete_unchanged of an object at another version raises
    PreconditionFailedError
    -> killed by 4: delete_unchanged_deletes_only_objects_still_at_their_version;
       delete_unchanged_sent_again_leaves_the_object_created_in_between;
       racing_conditional_deletes_never_delete_an_object_created_meanwhile; +1 more
* DeleteUnchangedNotAtomicClaimed: conditional_deletes True, but the version is read, then the
    object deleted
    -> killed by 2: racing_conditional_deletes_never_delete_an_object_created_meanwhile;
       racing_conditional_deletes_never_delete_an_object_written_meanwhile
* DeleteUnchangedUnreadableVersionMatchesAll: delete_unchanged takes a version it cannot parse
    for a wildcard
    -> killed by 1: delete_unchanged_deletes_only_objects_still_at_their_version

Left out, as no black-box case can show them: ``definite_create_conflicts`` True on a store
whose transport retries a create after a lost answer and reports its own first attempt as
"already exists" (the suite cannot make an answer get lost on an arbitrary backend; the
flag is the backend author's statement about its client); transient failures typed as
``RetryableStorageError`` and timeouts (the suite cannot make a healthy endpoint fail:
``FaultyStore`` and the backend modules test those); ``delete_many`` reporting a failure
(likewise); a store that folds case (the local store on macOS's default file system does, a
documented limit, docs/concepts.md: a case would fail there; caught by the '%zz' and
delete_many keys only where the fold changes them).
"""

from __future__ import annotations

import bisect
import hashlib
import inspect
import itertools
import multiprocessing
import shutil
import sys
import tempfile
import threading
import time
import unicodedata
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from _pytest.outcomes import Skipped
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from vactor_cloud.errors import (
    AlreadyExistsError,
    NotFoundError,
    PreconditionFailedError,
    RetryableStorageError,
    StorageError,
)
from vactor_cloud.storage import IfMatch, LocalStore, MemoryStore, ObjectStore, PutMode, _memory
from vactor_cloud.storage._base import Blob, Listing
from vactor_cloud.testing.lanes import Lane, StoreSpec
from vactor_cloud.testing.store_conformance import StoreConformance, _dict_model_machine

#: the longest any one case may run against a mutant before it counts as hung (a failure too)
CASE_TIMEOUT = 120.0


# -- the harness ------------------------------------------------------------------------------


class _SweepSuite(StoreConformance):
    """The suite as shipped, but for waits bounded shorter and a dict model that saves no
    failing examples (a mutant's would be replayed against the real stores) nor shrinks them."""

    wait_timeout = 30.0

    @staticmethod
    def _run_dict_model(store: ObjectStore) -> None:
        run_state_machine_as_test(
            _dict_model_machine(store),
            settings=settings(
                max_examples=20,
                stateful_step_count=12,
                deadline=None,
                database=None,
                phases=[Phase.generate],
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )


class _OneProcessLane(Lane):
    name = "sweep"
    multiprocess = False


@dataclass(frozen=True)
class MutantSpec(StoreSpec):
    """A store spec that opens ``kind`` (a memory or local store class, mutated or not)."""

    kind: type[ObjectStore] = MemoryStore
    extra: dict[str, Any] = field(default_factory=dict)

    def open(self) -> ObjectStore:
        if issubclass(self.kind, LocalStore):
            return self.kind(self.url.removeprefix("file://"))
        return self.kind(self.url.removeprefix("memory://"))  # type: ignore[call-arg]


@dataclass(frozen=True)
class Case:
    """One case of the suite: a test method and its parameters (``pytest.mark.parametrize``)."""

    method: str
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def name(self) -> str:
        if not self.params:
            return self.method
        return f"{self.method}[{'-'.join(str(value) for _, value in self.params)}]"


def conformance_cases() -> list[Case]:
    """Every case the suite holds, each parametrization its own."""
    cases: list[Case] = []
    for method in sorted(name for name in dir(StoreConformance) if name.startswith("test_")):
        grids: list[list[tuple[tuple[str, Any], ...]]] = []
        for mark in getattr(getattr(StoreConformance, method), "pytestmark", []):
            if mark.name != "parametrize":
                continue
            argnames, values = mark.args[0], mark.args[1]
            names = [n.strip() for n in argnames.split(",")] if isinstance(argnames, str) else list(argnames)
            rows = [value if len(names) > 1 else (value,) for value in values]
            grids.append([tuple(zip(names, row, strict=True)) for row in rows])
        for combo in itertools.product(*grids):
            cases.append(Case(method, tuple(pair for part in combo for pair in part)))
    return cases


def case_named(name: str) -> Case:
    matches = [case for case in conformance_cases() if case.name == name]
    assert len(matches) == 1, f"no conformance case named {name!r}"
    return matches[0]


def _new_spec(kind: type[ObjectStore], scratch: str) -> MutantSpec:
    if issubclass(kind, LocalStore):
        return MutantSpec(f"file://{scratch}/{uuid.uuid4().hex}", kind=kind)
    return MutantSpec(f"memory://sweep-h177-{uuid.uuid4().hex}", kind=kind)


def _call_case(kind: type[ObjectStore], case: Case, scratch: str) -> str | None:
    spec = _new_spec(kind, scratch)
    available: dict[str, Any] = {
        "store_spec": spec,
        "store_lane": _OneProcessLane(),
        "spawn_context": multiprocessing.get_context("spawn"),
        **dict(case.params),
    }
    method = getattr(_SweepSuite(), case.method)
    wanted = inspect.signature(method).parameters
    try:
        method(**{name: value for name, value in available.items() if name in wanted})
    except Skipped:
        return None
    except BaseException as exc:  # (pytest.fail's Failed is no Exception)
        return f"{type(exc).__name__}: {str(exc)[:300]}"
    finally:
        if not issubclass(kind, LocalStore):
            MemoryStore.wipe(spec.url.removeprefix("memory://"))
    return None


def run_case(kind: type[ObjectStore], case: Case) -> str | None:
    """Run ``case`` against a fresh store of ``kind``: ``None`` if it passed (or skipped), else
    what failed. Bounded: a case still running after :data:`CASE_TIMEOUT` s failed (hung)."""
    scratch = tempfile.mkdtemp(prefix="h177-sweep-")
    outcome: list[str | None] = []
    worker = threading.Thread(
        target=lambda: outcome.append(_call_case(kind, case, scratch)), name=f"sweep-{case.name}", daemon=True
    )
    worker.start()
    worker.join(CASE_TIMEOUT)
    if worker.is_alive():
        return f"hung: still running after {CASE_TIMEOUT:g} s"
    shutil.rmtree(scratch, ignore_errors=True)
    return outcome[0]


# -- mutants -------------------------------------------------------------------------------------
# Each is the memory store (or the local store) with one break of the contract; its docstring
# says which. They override the ``_``-prefixed hooks, so the plain requests go through them
# (``inline`` is then False: no ``*_now`` shortcut bypasses a mutation).

_GAP = 0.02  # the window a mutant leaves between a check and the write it guards (a race)


def _locked() -> Any:
    return _memory._LOCK


class _Mutant(MemoryStore):
    def _raw(self) -> dict[str, Blob]:
        return self._objects

    async def _plain_put(self, key: str, data: bytes) -> str:
        return await MemoryStore._put(self, key, data, "overwrite")


# put mode "create"
class CreateOverwrites(_Mutant):
    """create-only put overwrites an existing object"""

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        return await super()._put(key, data, "overwrite" if mode == "create" else mode)


class CreateConflictIsPreconditionFailed(_Mutant):
    """a create conflict raised as PreconditionFailedError, not AlreadyExistsError"""

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        try:
            return await super()._put(key, data, mode)
        except AlreadyExistsError as exc:
            raise PreconditionFailedError(str(exc), key) from None


class CreateConflictIsRetryable(_Mutant):
    """a create conflict raised as RetryableStorageError (a 409 taken for a transient one)"""

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        try:
            return await super()._put(key, data, mode)
        except AlreadyExistsError as exc:
            raise RetryableStorageError(str(exc), key) from None


class CreateConflictIsPlainError(_Mutant):
    """a create conflict raised as a plain RuntimeError"""

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        try:
            return await super()._put(key, data, mode)
        except AlreadyExistsError as exc:
            raise RuntimeError(str(exc)) from None


class CreateConflictNamesNoKey(_Mutant):
    """a create conflict that does not name the key"""

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        try:
            return await super()._put(key, data, mode)
        except AlreadyExistsError:
            raise AlreadyExistsError("the object already exists") from None


class CreateConflictStillWrites(_Mutant):
    """a refused create has written its bytes all the same"""

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        try:
            return await super()._put(key, data, mode)
        except AlreadyExistsError:
            await self._plain_put(key, data)
            raise


class CreateNotAtomic(_Mutant):
    """create checks that the key is free, then writes (racing creators both win)"""

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        if mode != "create":
            return await super()._put(key, data, mode)
        if await self._head(key) is not None:
            raise AlreadyExistsError(f"{self.url}/{key}: already exists", key)
        time.sleep(_GAP)
        return await self._plain_put(key, data)


# put mode IfMatch
class IfMatchIgnored(_Mutant):
    """an if-match put overwrites whatever the version"""

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        return await super()._put(key, data, "overwrite" if isinstance(mode, IfMatch) else mode)


class IfMatchOnMissingKeyCreates(_Mutant):
    """an if-match put on a missing key creates it"""

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        if isinstance(mode, IfMatch) and await self._head(key) is None:
            return await self._plain_put(key, data)
        return await super()._put(key, data, mode)


class IfMatchAcceptsAnyPastVersion(_Mutant):
    """an if-match put succeeds against any version the key ever had (a stale one too)"""

    past: dict[str, set[str]] = {}

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        history = self.past.setdefault(f"{self.url}/{key}", set())
        if isinstance(mode, IfMatch) and mode.version in history and await self._head(key) is not None:
            mode = "overwrite"
        version = await super()._put(key, data, mode)
        history.add(version)
        return version


class IfMatchConflictIsAlreadyExists(_Mutant):
    """an if-match conflict raised as AlreadyExistsError"""

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        try:
            return await super()._put(key, data, mode)
        except PreconditionFailedError as exc:
            raise AlreadyExistsError(str(exc), key) from None


class IfMatchConflictIsRetryable(_Mutant):
    """an if-match conflict raised as RetryableStorageError"""

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        try:
            return await super()._put(key, data, mode)
        except PreconditionFailedError as exc:
            raise RetryableStorageError(str(exc), key) from None


class IfMatchNotAtomic(_Mutant):
    """if-match reads the version, then writes (racing writers of one version both win)"""

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        if not isinstance(mode, IfMatch):
            return await super()._put(key, data, mode)
        if await self._head(key) != mode.version:
            raise PreconditionFailedError(f"{self.url}/{key}: version moved", key)
        time.sleep(_GAP)
        return await self._plain_put(key, data)


# versions
class PutReturnsOldVersion(_Mutant):
    """put answers the version the object had before (the new one is stored)"""

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        before = await self._head(key)
        version = await super()._put(key, data, mode)
        return before if before is not None else version


class VersionIsContentHash(_Mutant):
    """versions are a digest of the bytes (S3's plain ETag): A, B, A again repeats a version"""

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        digest = hashlib.sha256(data).hexdigest()[:16]
        with _locked():
            current = self._objects.get(key)
            if mode == "create" and current is not None:
                raise AlreadyExistsError(f"{self.url}/{key}: already exists", key)
            if isinstance(mode, IfMatch) and (current is None or current.version != mode.version):
                raise PreconditionFailedError(f"{self.url}/{key}: version moved", key)
            if current is None:
                bisect.insort(self._space.keys, key)
            self._objects[key] = Blob(data, digest)
        return digest


class VersionRestartsAfterDelete(_Mutant):
    """versions count the writes of a key, from 1 again once it is deleted"""

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        await super()._put(key, data, mode)
        with _locked():
            current = self._objects[key]
            writes = _WRITES[f"{self.url}/{key}"] = _WRITES.get(f"{self.url}/{key}", 0) + 1
            self._objects[key] = Blob(current.data, f"w{writes}")
        return f"w{writes}"

    async def _delete(self, key: str) -> None:
        _WRITES.pop(f"{self.url}/{key}", None)
        await super()._delete(key)

    async def _delete_unchanged(self, key: str, version: str) -> None:
        await super()._delete_unchanged(key, version)
        if await self._head(key) is None:
            _WRITES.pop(f"{self.url}/{key}", None)


_WRITES: dict[str, int] = {}


class VersionCountedPerClient(_Mutant):
    """versions counted by each store object from 1 (two clients hand out the same ones)"""

    def __init__(self, name: str = "default") -> None:
        super().__init__(name)
        self._count = itertools.count(1)

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        with _locked():
            current = self._objects.get(key)
            if mode == "create" and current is not None:
                raise AlreadyExistsError(f"{self.url}/{key}: already exists", key)
            if isinstance(mode, IfMatch) and (current is None or current.version != mode.version):
                raise PreconditionFailedError(f"{self.url}/{key}: version moved", key)
            if current is None:
                bisect.insort(self._space.keys, key)
            version = f"c{next(self._count)}"
            self._objects[key] = Blob(data, version)
        return version


class VersionIsAnInt(_Mutant):
    """put answers its version as an int"""

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        return int(await super()._put(key, data, mode))  # type: ignore[return-value]


# get and head
class HeadVersionDiffersFromGet(_Mutant):
    """head's version is spelt otherwise than get's (a quoted ETag on one, bare on the other)"""

    async def _head(self, key: str) -> str | None:
        version = await super()._head(key)
        return None if version is None else f'"{version}"'


class HeadOfMissingRaises(_Mutant):
    """head of a missing key raises NotFoundError instead of answering None"""

    async def _head(self, key: str) -> str | None:
        version = await super()._head(key)
        if version is None:
            raise NotFoundError(f"{self.url}/{key}: no such object", key)
        return version


class GetAnswersFirstVersion(_Mutant):
    """get answers the current bytes with the key's first version"""

    first: dict[str, str] = {}

    async def _get(self, key: str) -> Blob:
        blob = await super()._get(key)
        version = self.first.setdefault(f"{self.url}/{key}", blob.version)
        return Blob(blob.data, version)


class GetCutShortPastOneMiB(_Mutant):
    """get of an object over 1 MiB returns all but its last byte (a partial read)"""

    async def _get(self, key: str) -> Blob:
        blob = await super()._get(key)
        return Blob(blob.data[:-1], blob.version) if len(blob.data) > 1 << 20 else blob


class PutTruncatesPastFourMiB(_Mutant):
    """put keeps the first 4 MiB of a larger object"""

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        return await super()._put(key, data[: 4 << 20], mode)


class GetOfMissingIsEmpty(_Mutant):
    """get of a missing key answers b'' instead of NotFoundError"""

    async def _get(self, key: str) -> Blob:
        try:
            return await super()._get(key)
        except NotFoundError:
            return Blob(b"", "0")


class GetOfMissingIsRetryable(_Mutant):
    """get of a missing key raises RetryableStorageError (a 404 taken for a transient one)"""

    async def _get(self, key: str) -> Blob:
        try:
            return await super()._get(key)
        except NotFoundError as exc:
            raise RetryableStorageError(str(exc), key) from None


class GetOfMissingIsBuiltin(_Mutant):
    """get of a missing key raises the builtin FileNotFoundError"""

    async def _get(self, key: str) -> Blob:
        try:
            return await super()._get(key)
        except NotFoundError as exc:
            raise FileNotFoundError(str(exc)) from None


class _BackendNotFound(NotFoundError):
    def __init__(self, key: str, status: int) -> None:
        super().__init__(f"{key}: HTTP {status}", key)
        self.status = status

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.key, self.status, "extra"))


class NotFoundDoesNotPickle(_Mutant):
    """a backend's own NotFoundError subclass that does not survive pickling"""

    async def _get(self, key: str) -> Blob:
        try:
            return await super()._get(key)
        except NotFoundError:
            raise _BackendNotFound(key, 404) from None


class TornRead(_Mutant):
    """get reads an object in two halves, a write may land between them"""

    async def _get(self, key: str) -> Blob:
        first = await super()._get(key)
        time.sleep(_GAP / 4)
        second = await super()._get(key)
        half = len(first.data) // 2
        return Blob(first.data[:half] + second.data[half:], second.version)


class BytesDecodedAsText(_Mutant):
    """object bytes pass through a text decode (invalid UTF-8 replaced)"""

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        return await super()._put(key, data.decode("utf-8", "replace").encode(), mode)


class NewlinesNormalized(_Mutant):
    """CRLF in object bytes stored as LF (a text-mode write)"""

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        return await super()._put(key, data.replace(b"\r\n", b"\n"), mode)


class EmptyObjectNotListed(_Mutant):
    """an empty object is stored but left out of listings"""

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        listed = await super()._list(prefix, start_after, None)
        kept = [key for key in listed if self._objects.get(key, Blob(b"x", "")).data]
        return kept if limit is None else kept[:limit]


class HeadOfEmptyIsNone(_Mutant):
    """head of an empty object answers None (its bytes taken for its existence)"""

    async def _head(self, key: str) -> str | None:
        with _locked():
            blob = self._objects.get(key)
        return blob.version if blob is not None and blob.data else None


class GetAnswersBytearray(_Mutant):
    """get answers a bytearray, not bytes"""

    async def _get(self, key: str) -> Blob:
        blob = await super()._get(key)
        return Blob(bytearray(blob.data), blob.version)  # type: ignore[arg-type]


class GetAnswersMemoryview(_Mutant):
    """get answers a memoryview of the bytes, not bytes"""

    async def _get(self, key: str) -> Blob:
        blob = await super()._get(key)
        return Blob(memoryview(blob.data), blob.version)  # type: ignore[arg-type]


# keys
class _KeyMapping(_Mutant):
    """Stores every key as ``_stored(key)``: the break is in that mapping."""

    def _stored(self, key: str) -> str:
        raise NotImplementedError

    async def _get(self, key: str) -> Blob:
        return await super()._get(self._stored(key))

    async def _head(self, key: str) -> str | None:
        return await super()._head(self._stored(key))

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        return await super()._put(self._stored(key), data, mode)

    async def _delete(self, key: str) -> None:
        await super()._delete(self._stored(key))

    async def _delete_unchanged(self, key: str, version: str) -> None:
        await super()._delete_unchanged(self._stored(key), version)

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        after = None if start_after is None else self._stored(start_after)
        return await super()._list(self._stored(prefix), after, limit)


class KeySpacesReplaced(_KeyMapping):
    """keys stored with spaces as '+' (a form-encoded URL)"""

    def _stored(self, key: str) -> str:
        return key.replace(" ", "+")


class KeyNormalizedNFD(_KeyMapping):
    """keys stored decomposed (NFD: a normalizing file system)"""

    def _stored(self, key: str) -> str:
        return unicodedata.normalize("NFD", key)


class KeyPercentDecoded(_KeyMapping):
    """keys percent-decoded once (a URL built without quoting)"""

    def _stored(self, key: str) -> str:
        return urllib.parse.unquote(key)


class KeyCutAtQueryCharacters(_KeyMapping):
    """keys cut at '?' or '#' (a URL built without quoting: the rest is a query or fragment)"""

    def _stored(self, key: str) -> str:
        return key.split("?", 1)[0].split("#", 1)[0] or key


class KeyCaseFolded(_KeyMapping):
    """keys stored lower-cased (a case-insensitive backend)"""

    def _stored(self, key: str) -> str:
        return key.lower()


class KeyComponentsCutAt200Bytes(_KeyMapping):
    """each key component cut to 200 bytes (a file-name limit met silently)"""

    def _stored(self, key: str) -> str:
        parts = [part.encode()[:200].decode(errors="ignore") for part in key.split("/")]
        return "/".join(parts)


class KeyComponentsTrimmed(_KeyMapping):
    """spaces at either end of a key component trimmed (a file system or a form field)"""

    def _stored(self, key: str) -> str:
        return "/".join(part.strip(" ") or part for part in key.split("/"))


class PutSkipsTheKeyCheck(_Mutant):
    """put overridden whole (not its hook): an absolute key is stored, not refused"""

    async def put(self, key: str, data: bytes, *, mode: PutMode = "overwrite") -> str:
        self.requests.add("put")
        return await self._put(key.lstrip("/") or "root", bytes(data), mode)


class KeyCheckWithoutUtf8(_Mutant):
    """the key check overridden (a backend adding a rule of its own) without the base class's
    UTF-8 check: a key with a lone surrogate is stored"""

    def _check_key(self, key: str) -> None:
        if not key or key[0] == "/":
            raise StorageError(
                f"{self.url}: invalid key {key!r}: keys are non-empty and relative (no leading '/')", key
            )


class LongKeysRefused(_Mutant):
    """keys over 300 bytes refused with StorageError, while max_key_bytes claims no limit"""

    def _refuse_long(self, key: str) -> None:
        if len(key.encode()) > 300:
            raise StorageError(f"{self.url}/{key[:20]}...: key too long", key)

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        self._refuse_long(key)
        return await super()._put(key, data, mode)


class NestedKeysClaimedButRefused(_Mutant):
    """nested_keys True, but a key cannot be both an object and a prefix of others"""

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        listed = await super()._list(key + "/", None, 1)
        parents = ["/".join(key.split("/")[:n]) for n in range(1, key.count("/") + 1)]
        if listed or any(await super()._head(parent) is not None for parent in parents):
            raise StorageError(f"{self.url}/{key}: a file and a directory of one name", key)
        return await super()._put(key, data, mode)


class LocalNestedKeysClaimed(LocalStore):
    """the local store claiming nested_keys True (a filesystem cannot hold "a" and "a/b")"""

    nested_keys = True


# list
class ListIgnoresStartAfter(_Mutant):
    """list ignores start_after"""

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        return await super()._list(prefix, None, limit)


class ListIncludesStartAfter(_Mutant):
    """list includes the key start_after names"""

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        listed = await super()._list(prefix, start_after, limit)
        if (
            start_after is not None
            and await self._head(start_after) is not None
            and start_after.startswith(prefix)
        ):
            listed = [start_after, *listed]
            listed = listed if limit is None else listed[:limit]
        return listed


class ListUnsorted(_Mutant):
    """list answers keys in reverse order"""

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        return list(reversed(await super()._list(prefix, start_after, limit)))


class ListInWriteOrder(_Mutant):
    """list answers keys in the order they were first written (a hash map's order)"""

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        listed = set(await super()._list(prefix, start_after, None))
        ordered = [key for key in list(self._objects) if key in listed]
        return ordered if limit is None else ordered[:limit]


class ListIgnoresLimit(_Mutant):
    """list ignores limit"""

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        return await super()._list(prefix, start_after, None)


class ListLimitOneOver(_Mutant):
    """list answers one key more than limit"""

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        return await super()._list(prefix, start_after, None if limit is None else limit + 1)


class ListIgnoresPrefix(_Mutant):
    """list answers every key from the prefix on, under it or not"""

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        keys = [
            key for key in self._space.keys if key >= prefix and (start_after is None or key > start_after)
        ]
        return keys if limit is None else keys[:limit]


class ListPrefixAsDirectory(_Mutant):
    """list of "a" answers only keys under "a/" (a directory, not a string prefix)"""

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        directory = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        return await super()._list(directory, start_after, limit)


class ListDropsLastPage(_Mutant):
    """list pages of 5 keys and drops the last page when it is not full"""

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        listed = await super()._list(prefix, start_after, limit)
        if limit is not None and len(listed) == limit:
            return listed
        return listed[: len(listed) // 5 * 5] if len(listed) > 5 else listed


class ListRepeatsAKey(_Mutant):
    """list answers the first key of a page twice"""

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        listed = await super()._list(prefix, start_after, limit)
        return [listed[0], *listed] if len(listed) > 1 and limit is None else listed


class ListFromOwnCache(_Mutant):
    """list answers from the keys this store object wrote and deleted (a client-side cache)"""

    def __init__(self, name: str = "default") -> None:
        super().__init__(name)
        self._seen: set[str] = set()

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        version = await super()._put(key, data, mode)
        self._seen.add(key)
        return version

    async def _delete(self, key: str) -> None:
        await super()._delete(key)
        self._seen.discard(key)

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        keys = sorted(
            k for k in self._seen if k.startswith(prefix) and (start_after is None or k > start_after)
        )
        return keys if limit is None else keys[:limit]


class ListNamesNoVersions(_Mutant):
    """list names no versions (a plain list)"""

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        return list(await super()._list(prefix, start_after, limit))


class ListNamesFirstVersions(_Mutant):
    """list names each key's version as first listed (a cache that outlives a replacement)"""

    def __init__(self, name: str = "default") -> None:
        super().__init__(name)
        self._listed: dict[str, str] = {}

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        listed = await super()._list(prefix, start_after, limit)
        assert isinstance(listed, Listing) and listed.versions is not None
        versions = {key: self._listed.setdefault(key, version) for key, version in listed.versions.items()}
        return Listing(listed, listed.requests, versions)


class ListNamesStaleVersionsOfObjectsNotRead(_Mutant):
    """a listing names, for objects this store object never read, the version it first listed
    (right for the objects it read, as the local store's are)"""

    def __init__(self, name: str = "default") -> None:
        super().__init__(name)
        self._read: set[str] = set()
        self._listed: dict[str, str] = {}

    async def _get(self, key: str) -> Blob:
        self._read.add(key)
        return await super()._get(key)

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        listed = await super()._list(prefix, start_after, limit)
        assert isinstance(listed, Listing) and listed.versions is not None
        versions = {
            key: version if key in self._read else self._listed.setdefault(key, version)
            for key, version in listed.versions.items()
        }
        return Listing(listed, listed.requests, versions)


class ListShowsStoreOwnFiles(_Mutant):
    """list answers the store's own bookkeeping key (a layout marker) as an object"""

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        listed = list(await super()._list(prefix, start_after, limit))
        if ".vactor-layout".startswith(prefix) and (start_after is None or start_after < ".vactor-layout"):
            listed = sorted([".vactor-layout", *listed])
        return listed if limit is None else listed[:limit]


class ListStartAfterBeforePrefixFindsNothing(_Mutant):
    """list with start_after sorting before the prefix answers nothing (start_after taken as a
    key under the prefix)"""

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        if start_after is not None and not start_after.startswith(prefix):
            return Listing([], 1, {})
        return await super()._list(prefix, start_after, limit)


class ListPagesButClaimsOneMoment(_Mutant):
    """list reads pages of 2 keys, releasing the store between them, and says one request
    (listed_at_one_moment True): a write meanwhile is seen without one made before it"""

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        found: list[str] = []
        versions: dict[str, str] = {}
        after = start_after
        while limit is None or len(found) < limit:
            page = await super()._list(prefix, after, 2 if limit is None else min(2, limit - len(found)))
            if not page:
                break
            assert isinstance(page, Listing) and page.versions is not None
            found.extend(page)
            versions.update(page.versions)
            after = page[-1]
            time.sleep(0.0005)
        return Listing(found, 1, versions)


class ListPageBoundaryKeyLost(_Mutant):
    """list reads pages of 3 keys, each next page starting one key too far (a continuation
    token taken for the next page's first key)"""

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        listed = await super()._list(prefix, start_after, limit)
        return [key for n, key in enumerate(listed) if n % 4 != 3]


# inline requests (memory and local: the runtime's step commits, post reads and listings)
class InlineCreateOverwrites(_Mutant):
    """put_now (the runtime's step commit) overwrites on mode="create"; put keeps the contract"""

    def put_now(self, key: str, data: bytes, *, mode: PutMode = "overwrite") -> str:
        return super().put_now(key, data, mode="overwrite" if mode == "create" else mode)


class InlineIfMatchIgnored(_Mutant):
    """put_now ignores IfMatch"""

    def put_now(self, key: str, data: bytes, *, mode: PutMode = "overwrite") -> str:
        return super().put_now(key, data, mode="overwrite" if isinstance(mode, IfMatch) else mode)


class InlineGetAnswersFirstVersion(_Mutant):
    """get_now answers the current bytes with the key's first version"""

    first: dict[str, str] = {}

    def get_now(self, key: str) -> Blob:
        blob = super().get_now(key)
        return Blob(blob.data, self.first.setdefault(f"{self.url}/{key}", blob.version))


class InlineListIgnoresStartAfter(_Mutant):
    """list_now ignores start_after"""

    def list_now(self, prefix: str, *, start_after: str | None = None, limit: int | None = None) -> list[str]:
        return super().list_now(prefix, limit=limit)


class LocalInlineCreateOverwrites(LocalStore):
    """the local store whose put_now overwrites on mode "create"."""

    def put_now(self, key: str, data: bytes, *, mode: PutMode = "overwrite") -> str:
        return super().put_now(key, data, mode="overwrite" if mode == "create" else mode)


# keys that only prefix others ("p/q" while "p/q/r" exists: a directory on a filesystem)
def _prefixes_others(store: MemoryStore, key: str) -> bool:
    return any(other.startswith(f"{key}/") for other in list(store._objects))


class HeadOfAPrefixAnswersAVersion(_Mutant):
    """head of a key that only prefixes others answers a version (a directory's stat)"""

    async def _head(self, key: str) -> str | None:
        version = await super()._head(key)
        return "directory" if version is None and _prefixes_others(self, key) else version


class GetOfAPrefixIsNoNotFound(_Mutant):
    """get of a key that only prefixes others raises StorageError, not NotFoundError
    (a filesystem's IsADirectoryError passed on as it is)"""

    async def _get(self, key: str) -> Blob:
        if _prefixes_others(self, key) and await super()._head(key) is None:
            raise StorageError(f"{self.url}/{key}: is a directory", key)
        return await super()._get(key)


class DeleteOfAPrefixRaises(_Mutant):
    """delete of a key that only prefixes others raises StorageError (rmdir of a full one)"""

    async def _delete(self, key: str) -> None:
        if _prefixes_others(self, key) and await super()._head(key) is None:
            raise StorageError(f"{self.url}/{key}: directory not empty", key)
        await super()._delete(key)


class StaleTempRemovalDeletesObjects(_Mutant):
    """remove_stale_temp_files removes every object under the prefix older than the age"""

    async def remove_stale_temp_files(self, prefix: str, *, older_than: float) -> int:
        doomed = await super()._list(prefix, None, None)
        for key in doomed:
            await super()._delete(key)
        return len(doomed)


class LocalClaimsEveryListingOneMoment(LocalStore):
    """the local store reporting every listing as one moment (it walks directories one after
    another: only a mailbox, one directory, is read at once)"""

    def listed_at_one_moment(self, prefix: str, keys: list[str]) -> bool:
        return True


class GetFromOwnCache(_Mutant):
    """get answers what this store object read or wrote at the key before (a client cache)"""

    def __init__(self, name: str = "default") -> None:
        super().__init__(name)
        self._cache: dict[str, Blob] = {}

    async def _get(self, key: str) -> Blob:
        if key not in self._cache:
            self._cache[key] = await super()._get(key)
        return self._cache[key]

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        version = await super()._put(key, data, mode)
        self._cache[key] = Blob(data, version)
        return version


class HeadFromOwnCache(_Mutant):
    """head answers the version this store object last saw at the key (a client cache)"""

    def __init__(self, name: str = "default") -> None:
        super().__init__(name)
        self._seen: dict[str, str] = {}

    async def _head(self, key: str) -> str | None:
        if key in self._seen:
            return self._seen[key]
        return await super()._head(key)

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        self._seen[key] = await super()._put(key, data, mode)
        return self._seen[key]

    async def _delete(self, key: str) -> None:
        await super()._delete(key)
        self._seen.pop(key, None)


class DeleteUnchangedBatchChecksTheFirstKeyOnly(_Mutant):
    """a batch conditional delete (delete_batch 3) compares the first key's version only and
    deletes every key of the batch when it matches"""

    delete_batch = 3

    async def _delete_many_unchanged(self, versions: dict[str, str]) -> None:
        first, version = next(iter(versions.items()))
        if await self._head(first) == version:
            for key in versions:
                await self._delete(key)


class WritesSentLater(_Mutant):
    """a plain overwrite answers at once and reaches the store with this store object's next
    request (a write-behind client): this client reads its own writes, others do not yet"""

    def __init__(self, name: str = "default") -> None:
        super().__init__(name)
        self._behind: dict[str, bytes] = {}

    async def _send_behind(self) -> None:
        behind, self._behind = self._behind, {}
        for key, data in behind.items():
            await super()._put(key, data, "overwrite")

    async def _put(self, key: str, data: bytes, mode: PutMode) -> str:
        if mode == "overwrite":
            await self._send_behind()
            self._behind[key] = data
            return f"behind-{uuid.uuid4().hex}"
        await self._send_behind()
        return await super()._put(key, data, mode)

    async def _get(self, key: str) -> Blob:
        await self._send_behind()
        return await super()._get(key)

    async def _head(self, key: str) -> str | None:
        await self._send_behind()
        return await super()._head(key)

    async def _list(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        await self._send_behind()
        return await super()._list(prefix, start_after, limit)


# delete
class DeleteOfMissingRaises(_Mutant):
    """delete of a missing key raises NotFoundError"""

    async def _delete(self, key: str) -> None:
        if await self._head(key) is None:
            raise NotFoundError(f"{self.url}/{key}: no such object", key)
        await super()._delete(key)


class DeleteDoesNothing(_Mutant):
    """delete answers but deletes nothing"""

    async def _delete(self, key: str) -> None:
        return None


class DeleteTakesAPrefix(_Mutant):
    """delete of "k" deletes every key starting with "k" (a recursive remove)"""

    async def _delete(self, key: str) -> None:
        for doomed in await super()._list(key, None, None):
            await super()._delete(doomed)


class DeleteManySkipsTheLastKey(_Mutant):
    """delete_many's batch request leaves its last key"""

    delete_batch = 3

    async def _delete_many(self, keys: list[str]) -> None:
        for key in keys[:-1] if len(keys) > 1 else keys:
            await self._delete(key)


class DeleteManyOnlyTheFirstKey(_Mutant):
    """delete_batch claims batches, but the batch request deletes its first key only"""

    delete_batch = 1000

    async def _delete_many(self, keys: list[str]) -> None:
        await self._delete(keys[0])


class DeleteManyStopsAtAMissingKey(_Mutant):
    """delete_many's batch stops at the first key already gone"""

    delete_batch = 3

    async def _delete_many(self, keys: list[str]) -> None:
        for key in keys:
            if await self._head(key) is None:
                return
            await self._delete(key)


class DeleteUnchangedIgnoresVersion(_Mutant):
    """delete_unchanged deletes whatever the version"""

    async def _delete_unchanged(self, key: str, version: str) -> None:
        await self._delete(key)


class DeleteUnchangedDeletesNothing(_Mutant):
    """delete_unchanged deletes nothing"""

    async def _delete_unchanged(self, key: str, version: str) -> None:
        return None


class DeleteUnchangedOfMissingRaises(_Mutant):
    """delete_unchanged of a missing key raises NotFoundError"""

    async def _delete_unchanged(self, key: str, version: str) -> None:
        if await self._head(key) is None:
            raise NotFoundError(f"{self.url}/{key}: no such object", key)
        await super()._delete_unchanged(key, version)


class DeleteUnchangedOfOtherVersionRaises(_Mutant):
    """delete_unchanged of an object at another version raises PreconditionFailedError"""

    async def _delete_unchanged(self, key: str, version: str) -> None:
        current = await self._head(key)
        if current is not None and current != version:
            raise PreconditionFailedError(f"{self.url}/{key}: at {current}", key)
        await super()._delete_unchanged(key, version)


class DeleteUnchangedNotAtomicClaimed(_Mutant):
    """conditional_deletes True, but the version is read, then the object deleted"""

    async def _delete_unchanged(self, key: str, version: str) -> None:
        if await self._head(key) == version:
            time.sleep(_GAP)
            await self._delete(key)


class DeleteUnchangedUnreadableVersionMatchesAll(_Mutant):
    """delete_unchanged takes a version it cannot parse for a wildcard"""

    async def _delete_unchanged(self, key: str, version: str) -> None:
        if not version.isdigit():
            await self._delete(key)
            return
        await super()._delete_unchanged(key, version)


MUTANTS: list[type[ObjectStore]] = [
    obj
    for obj in list(globals().values())
    if isinstance(obj, type)
    and issubclass(obj, ObjectStore)
    and obj.__module__ == __name__
    and not obj.__name__.startswith("_")
]


def sweep(kinds: list[type[ObjectStore]]) -> Iterator[tuple[str, list[str]]]:
    """Run the whole suite against each of ``kinds``: its name and the cases that failed."""
    cases = conformance_cases()
    for kind in kinds:
        yield kind.__name__, [case.name for case in cases if run_case(kind, case) is not None]


#: for each mutant, the cases of which one must fail against it (the first the sweep found, or
#: for a race every case that may meet it: one is enough); every case that fails is in the table
KILLERS: dict[str, tuple[str, ...]] = {
    "CreateOverwrites": ("create_refuses_existing_key_and_keeps_its_bytes",),
    "CreateConflictIsPreconditionFailed": ("create_refuses_existing_key_and_keeps_its_bytes",),
    "CreateConflictIsRetryable": ("create_refuses_existing_key_and_keeps_its_bytes",),
    "CreateConflictIsPlainError": ("create_refuses_existing_key_and_keeps_its_bytes",),
    "CreateConflictNamesNoKey": ("errors_are_vactor_errors_naming_the_key",),
    "CreateConflictStillWrites": ("create_refuses_existing_key_and_keeps_its_bytes",),
    "CreateNotAtomic": ("racing_threads_create_exactly_one_winner",),
    "IfMatchIgnored": ("errors_are_vactor_errors_naming_the_key",),
    "IfMatchOnMissingKeyCreates": ("if_match_on_missing_key_is_refused",),
    "IfMatchAcceptsAnyPastVersion": ("errors_are_vactor_errors_naming_the_key",),
    "IfMatchConflictIsAlreadyExists": ("errors_are_vactor_errors_naming_the_key",),
    "IfMatchConflictIsRetryable": ("errors_are_vactor_errors_naming_the_key",),
    "IfMatchNotAtomic": ("racing_if_match_writers_exactly_one_wins",),
    "PutReturnsOldVersion": ("if_match_with_current_version_succeeds_with_new_version",),
    "VersionIsContentHash": ("a_listed_version_changes_when_its_object_is_replaced",),
    "VersionRestartsAfterDelete": ("a_listed_version_changes_when_its_object_is_replaced",),
    "VersionCountedPerClient": ("a_listed_version_changes_when_its_object_is_replaced",),
    "VersionIsAnInt": ("a_listed_version_changes_when_its_object_is_replaced",),
    "HeadVersionDiffersFromGet": ("delete_unchanged_deletes_only_objects_still_at_their_version",),
    "HeadOfMissingRaises": ("delete_many_deletes_every_key_and_nothing_else",),
    "GetAnswersFirstVersion": ("overwrite_replaces_bytes_and_version",),
    "GetCutShortPastOneMiB": ("large_object_round_trips[overwrite]",),
    "PutTruncatesPastFourMiB": ("large_object_round_trips[overwrite]",),
    "GetOfMissingIsEmpty": ("delete_removes_object",),
    "GetOfMissingIsRetryable": ("delete_removes_object",),
    "GetOfMissingIsBuiltin": ("delete_removes_object",),
    "NotFoundDoesNotPickle": ("errors_are_vactor_errors_naming_the_key",),
    "TornRead": ("reader_never_sees_a_partial_object",),
    "BytesDecodedAsText": ("binary_data_round_trips_byte_for_byte",),
    "NewlinesNormalized": ("binary_data_round_trips_byte_for_byte",),
    "EmptyObjectNotListed": ("a_listed_version_changes_when_its_object_is_replaced",),
    "HeadOfEmptyIsNone": ("empty_object_exists_and_reads_empty",),
    "GetAnswersBytearray": ("put_get_head_round_trip",),
    "GetAnswersMemoryview": ("put_get_head_round_trip",),
    "KeySpacesReplaced": ("delete_many_takes_the_keys_vactor_cloud_writes_verbatim",),
    "KeyNormalizedNFD": ("delete_many_takes_the_keys_vactor_cloud_writes_verbatim",),
    "KeyPercentDecoded": ("unusual_keys_round_trip_and_list_verbatim[percent/%20%2F%zz]",),
    "KeyCutAtQueryCharacters": ("unusual_keys_round_trip_and_list_verbatim[query/a?b=c&d#e?f]",),
    "KeyCaseFolded": ("delete_many_takes_the_keys_vactor_cloud_writes_verbatim",),
    "KeyComponentsCutAt200Bytes": ("keys_as_long_as_the_runtime_writes_round_trip_distinct",),
    "KeyComponentsTrimmed": ("unusual_keys_round_trip_and_list_verbatim[edges/ both ends /trailing ]",),
    "PutSkipsTheKeyCheck": ("empty_and_absolute_keys_are_refused_before_any_request[]",),
    "LongKeysRefused": ("keys_as_long_as_the_runtime_writes_round_trip_distinct",),
    "NestedKeysClaimedButRefused": ("a_listed_version_changes_when_its_object_is_replaced",),
    "LocalNestedKeysClaimed": ("key_and_keys_under_it_coexist", "delete_removes_object"),
    "ListIgnoresStartAfter": ("a_listing_after_a_key_asks_the_store_to_start_there",),
    "ListIncludesStartAfter": ("a_listing_after_a_key_asks_the_store_to_start_there",),
    "ListUnsorted": ("a_listed_version_changes_when_its_object_is_replaced",),
    "ListInWriteOrder": ("a_listed_version_changes_when_its_object_is_replaced",),
    "ListIgnoresLimit": ("a_listing_after_a_key_asks_the_store_to_start_there",),
    "ListLimitOneOver": ("a_listing_after_a_key_asks_the_store_to_start_there",),
    "ListIgnoresPrefix": ("a_listed_version_changes_when_its_object_is_replaced",),
    "ListPrefixAsDirectory": ("key_and_keys_under_it_coexist",),
    "ListDropsLastPage": ("list_is_sorted_recursive_and_prefix_filtered",),
    "ListRepeatsAKey": ("a_listed_version_changes_when_its_object_is_replaced",),
    "ListFromOwnCache": ("a_listed_version_changes_when_its_object_is_replaced",),
    "ListNamesNoVersions": ("a_listed_version_changes_when_its_object_is_replaced",),
    "ListNamesFirstVersions": ("a_listed_version_changes_when_its_object_is_replaced",),
    "ListNamesStaleVersionsOfObjectsNotRead": ("a_listed_version_changes_when_its_object_is_replaced",),
    "ListShowsStoreOwnFiles": ("a_listed_version_changes_when_its_object_is_replaced",),
    "ListStartAfterBeforePrefixFindsNothing": ("list_start_after_and_limit",),
    "ListPagesButClaimsOneMoment": (
        "a_listing_reported_as_one_moment_never_shows_a_write_without_an_earlier_one",
    ),
    "ListPageBoundaryKeyLost": ("a_listed_version_changes_when_its_object_is_replaced",),
    "InlineCreateOverwrites": ("inline_requests_keep_the_contract_of_the_requests_they_stand_for",),
    "InlineIfMatchIgnored": ("inline_requests_keep_the_contract_of_the_requests_they_stand_for",),
    "InlineGetAnswersFirstVersion": ("inline_requests_keep_the_contract_of_the_requests_they_stand_for",),
    "InlineListIgnoresStartAfter": ("inline_requests_keep_the_contract_of_the_requests_they_stand_for",),
    "LocalInlineCreateOverwrites": ("inline_requests_keep_the_contract_of_the_requests_they_stand_for",),
    "HeadOfAPrefixAnswersAVersion": ("a_key_that_only_prefixes_others_names_no_object",),
    "GetOfAPrefixIsNoNotFound": ("a_key_that_only_prefixes_others_names_no_object",),
    "DeleteOfAPrefixRaises": ("a_key_that_only_prefixes_others_names_no_object",),
    "StaleTempRemovalDeletesObjects": ("removing_stale_temp_files_never_touches_an_object",),
    "LocalClaimsEveryListingOneMoment": ("a_listing_of_several_pages_is_not_reported_as_one_moment",),
    "GetFromOwnCache": ("reader_never_sees_a_partial_object", "delete_removes_object"),
    "HeadFromOwnCache": ("list_sees_writes_and_deletes_of_another_client",),
    "DeleteUnchangedBatchChecksTheFirstKeyOnly": (
        "delete_unchanged_deletes_only_objects_still_at_their_version",
    ),
    "WritesSentLater": ("list_sees_writes_and_deletes_of_another_client",),
    "KeyCheckWithoutUtf8": ("keys_that_are_no_utf8_text_are_refused_before_any_request",),
    "DeleteOfMissingRaises": ("delete_many_of_missing_and_repeated_keys_is_not_an_error",),
    "DeleteDoesNothing": ("a_listed_version_changes_when_its_object_is_replaced",),
    "DeleteTakesAPrefix": ("delete_removes_object",),
    "DeleteManySkipsTheLastKey": ("delete_many_deletes_every_key_and_nothing_else",),
    "DeleteManyOnlyTheFirstKey": ("delete_many_deletes_every_key_and_nothing_else",),
    "DeleteManyStopsAtAMissingKey": ("delete_many_of_missing_and_repeated_keys_is_not_an_error",),
    "DeleteUnchangedIgnoresVersion": ("delete_unchanged_deletes_only_objects_still_at_their_version",),
    "DeleteUnchangedDeletesNothing": ("delete_unchanged_deletes_only_objects_still_at_their_version",),
    "DeleteUnchangedOfMissingRaises": ("delete_unchanged_deletes_only_objects_still_at_their_version",),
    "DeleteUnchangedOfOtherVersionRaises": ("delete_unchanged_deletes_only_objects_still_at_their_version",),
    "DeleteUnchangedNotAtomicClaimed": (
        "racing_conditional_deletes_never_delete_an_object_created_meanwhile",
        "racing_conditional_deletes_never_delete_an_object_written_meanwhile",
    ),
    "DeleteUnchangedUnreadableVersionMatchesAll": (
        "delete_unchanged_deletes_only_objects_still_at_their_version",
    ),
}


def test_every_mutant_has_its_killers_and_they_are_cases_of_the_suite() -> None:
    assert sorted(KILLERS) == sorted(kind.__name__ for kind in MUTANTS)
    for names in KILLERS.values():
        assert names
        for name in names:
            case_named(f"test_{name}")
    assert len(MUTANTS) >= 40


#: mutants whose break shows only when two requests meet in its window (a race): their cases
#: are run up to three times, one failure enough (each failed every time in the sweeps, but a
#: loaded host may serialize the racers once)
RACES = frozenset(
    {
        "CreateNotAtomic",
        "IfMatchNotAtomic",
        "TornRead",
        "ListPagesButClaimsOneMoment",
        "DeleteUnchangedNotAtomicClaimed",
    }
)


@pytest.mark.usefixtures("brief_assertion_messages")  # (only the first 300 characters are kept)
@pytest.mark.parametrize("kind", MUTANTS, ids=lambda kind: kind.__name__)
def test_the_conformance_suite_fails_against_the_mutant(kind: type[ObjectStore]) -> None:
    passed: list[str] = []
    for _ in range(3 if kind.__name__ in RACES else 1):
        for name in KILLERS[kind.__name__]:
            if run_case(kind, case_named(f"test_{name}")) is not None:
                return
            passed.append(name)
    pytest.fail(f"{kind.__name__} ({kind.__doc__}) passed the cases meant to catch it: {passed}")


@pytest.mark.parametrize("kind", [MemoryStore, LocalStore], ids=["memory", "local"])
def test_the_stores_as_shipped_pass_every_case_through_the_harness(kind: type[ObjectStore]) -> None:
    # (a harness that failed every case would make every mutant look caught)
    failed = {case.name: failure for case in conformance_cases() if (failure := run_case(kind, case))}
    assert failed == {}


if __name__ == "__main__":
    chosen = [kind for kind in MUTANTS if len(sys.argv) < 2 or kind.__name__ in sys.argv[1:]]
    for name, failed in sweep(chosen):
        print(f"{name}: {', '.join(failed) if failed else 'SURVIVED'}", flush=True)
