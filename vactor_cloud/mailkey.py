"""The store's mail key: it seals (encrypts) the posts that object names carry.

A small post also carries itself in its object name (``vactor_cloud.post_objects.inline_name``)
so that a folder learns it from its LIST, with no GET. Object names reach places bodies do
not (server access logs, CloudTrail data events, inventories, any principal allowed to
LIST), so the post in a name is sealed with this key: 32 random bytes in one create-only
object at the store root (``keys.mail_seal_key``), as readable as any body and no more.
Whoever creates it first wins; everyone reads the winner's. A poster loads it in the
background (its posts keep bare names meanwhile); a folder that lists a sealed name reads
it before it reads the names (never makes one). A process that cannot read it
(an error, a damaged or forged object) writes bare names and GETs the bodies, as before
names carried posts. See docs/protocol.md ("Posts carried by their names").

The cipher is keyed BLAKE2b in counter mode (a pseudo-random function as a stream cipher)
under a random 12-byte nonce per name; the name's digest is over the sealed bytes
(encrypt-then-digest): signed with the signing key where one is configured, as every object.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
import weakref

from vactor_cloud import _sync, codec
from vactor_cloud.checked_read import read_checked
from vactor_cloud.errors import IntegrityError, NotFoundError, StorageError
from vactor_cloud.forked_child import renew_in_a_forked_child
from vactor_cloud.keys import mail_seal_key
from vactor_cloud.storage import ObjectStore

__all__ = ["KEY_BYTES", "KEY_ID_BYTES", "NONCE_BYTES", "MailKeys", "key_id", "mail_keys", "seal"]

logger = logging.getLogger(__name__)

KEY_BYTES = 32
NONCE_BYTES = 12
KEY_ID_BYTES = 4
#: BLAKE2b's personalization: this keystream and no other use of the key
_PERSON = b"vactor-post-name"
_BLOCK = 64
#: after a failed load, the next try waits this long (seconds): bare names meanwhile
RETRY_AFTER = 30.0


def seal(key: bytes, nonce: bytes, data: bytes) -> bytes:
    """``data`` XOR the keystream of (``key``, ``nonce``): block ``i`` is
    ``BLAKE2b-512(nonce || u32be(i), key=key, person=b"vactor-post-name")``. Its own inverse."""
    stream = bytearray()
    for i in range(-(-len(data) // _BLOCK)):
        block = hashlib.blake2b(nonce + i.to_bytes(4, "big"), key=key, digest_size=_BLOCK, person=_PERSON)
        stream += block.digest()
    return bytes(a ^ b for a, b in zip(data, stream, strict=False))


def key_id(key: bytes) -> bytes:
    """Which key sealed a name: ``BLAKE2b-32(b"", key=key, person=b"vactor-mail-kid")``. A
    reader holding another key (the object was deleted and made anew) reads the body."""
    return hashlib.blake2b(b"", key=key, digest_size=KEY_ID_BYTES, person=b"vactor-mail-kid").digest()


def _encode(key: bytes, signing_key: bytes | None) -> bytes:
    return codec.encode(mail_seal_key(), {"kind": "mail-key"}, {"key": key}, signing_key=signing_key)


def _decode(data: bytes, signing_key: bytes | None) -> bytes:
    env = codec.decode(mail_seal_key(), data, signing_key=signing_key)
    key = env.parts.get("key", b"")
    if env.meta.get("kind") != "mail-key" or len(key) != KEY_BYTES:
        raise IntegrityError(mail_seal_key(), "not a mail key")
    return key


class MailKeys:
    """The mail key of one store, loaded once per process (shared by its actors)."""

    __slots__ = ("_absent", "_key", "_store", "_tried_at", "signing_key")

    def __init__(self, store: ObjectStore, signing_key: bytes | None) -> None:
        #: weakly: ``_KEYS`` is keyed weakly by the store, and a value holding its key strongly
        #: kept every store that ever posted (its transport, pools) alive for the process's life
        self._store = weakref.ref(store)
        self.signing_key = signing_key
        self._key: bytes | None = None
        self._tried_at = -float("inf")
        #: the last try found no key and made none (a reader's): a poster's try makes one at once
        self._absent = False

    @property
    def key(self) -> bytes | None:
        """The key if loaded (None: not yet, or it could not be read: bare names)."""
        return self._key

    def _due(self, create: bool) -> bool:
        if self._key is not None:
            return False
        return (create and self._absent) or time.monotonic() - self._tried_at >= RETRY_AFTER

    async def load(self, *, create: bool) -> bytes | None:
        """The key: read (one GET), or with ``create`` made if there is none yet (a create-only
        PUT; the winner's is read back if another process made one first)."""
        if not self._due(create):
            return self._key
        store = self._store()
        if store is None:  # (its actors are gone with it)
            return self._key
        self._tried_at, self._absent = time.monotonic(), False
        try:
            try:
                self._key = await _read(store, self.signing_key)
            except NotFoundError:
                if not create:
                    self._absent = True
                    return None
                key = secrets.token_bytes(KEY_BYTES)
                try:
                    await store.put(mail_seal_key(), _encode(key, self.signing_key), mode="create")
                    self._key = key
                except StorageError:  # another's (or ours, its answer lost): read the one there
                    self._key = await _read(store, self.signing_key)
        except (StorageError, IntegrityError) as exc:
            _unreadable(exc)
        return self._key

    def load_now(self, *, create: bool) -> bytes | None:
        """:meth:`load` from a thread that is not the IO loop's (a fold on the local store)."""
        return _sync.sync(self.load(create=create)) if self._due(create) else self._key


async def _read(store: ObjectStore, signing_key: bytes | None) -> bytes:
    """The key stored, read again if it does not verify (a read cut short on the way)."""
    return await read_checked(store, mail_seal_key(), lambda blob: _decode(blob.data, signing_key))


def _unreadable(exc: BaseException) -> None:
    logger.warning(
        "the store's mail key (%s) could not be read; posts keep bare names for %.0f s "
        "(one GET more per posted call): %s%s",
        mail_seal_key(),
        RETRY_AFTER,
        exc,
        "; if it is damaged, delete it (a new one is made)" if isinstance(exc, IntegrityError) else "",
    )


#: one per store object, shared by the actors of a process
_KEYS: weakref.WeakKeyDictionary[ObjectStore, MailKeys] = weakref.WeakKeyDictionary()
_KEYS_LOCK = threading.Lock()


renew_in_a_forked_child(globals(), "_KEYS_LOCK")


def mail_keys(store: ObjectStore, signing_key: bytes | None) -> MailKeys:
    with _KEYS_LOCK:
        keys = _KEYS.get(store)
        if keys is None or keys.signing_key != signing_key:
            keys = _KEYS[store] = MailKeys(store, signing_key)
        return keys
