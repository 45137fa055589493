"""Sealing: stream, seq, chain, canonical bytes, leaf hash, Merkle tree, signed head.

One :class:`StreamSealer` per stream, used by one writer at a time. ``commit()``
seals a batch and stores it as one block in one transaction, with an Ed25519
signature over the new tree head; if the store fails, the stream's state is left
as it was before the batch, so the next commit continues the chain correctly.
"""

from __future__ import annotations

import hashlib
import operator
import time
import unicodedata
from collections.abc import Callable
from typing import Any

import orjson

from kroonika.audit._errors import AuditUnavailable
from kroonika.audit._model import SealedEvent, rfc3339_micro
from kroonika.audit.integrity import CompactRange
from kroonika.audit.privacy import SubjectKeys
from kroonika.audit.signing import KeyRing
from kroonika.audit.store._types import (
    AuditStore,
    Block,
    Checkpoint,
    StreamState,
    TreeHead,
    record_length,
)

ZERO_HASH = bytes(32)

_CANONICAL_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER
# A sealed event's fields from its record, between (stream, seq) and (canonical, leaf).
_SEALED_FIELDS = operator.itemgetter("id", "time", "type", "category", "outcome", "severity")


def canonical_record(record: dict[str, Any]) -> bytes:
    """RFC 8785 bytes of a record built by ``AuditEvent.to_record``.

    The general :func:`kroonika.audit.integrity.canonical` walks the value first to
    refuse floats and to order non-ASCII keys by UTF-16 units. A record needs
    neither walk: its keys are ASCII names from the code and the catalogue, and the
    ``validate`` step admits only str, int (within 2**53), bool and lists of those.
    So sorted-key orjson is RFC 8785 here; a Hypothesis test checks it byte for byte
    against the reference implementation on generated events.
    """
    return orjson.dumps(record, option=_CANONICAL_OPTIONS)


def checkpoint_hash(cp: Checkpoint) -> bytes:
    return hashlib.sha256(cp.signed_bytes()).digest()


def _resumable_tree(state: StreamState, keyring: KeyRing) -> CompactRange:
    """The Merkle frontier to continue a stream from, if its newest block's signed
    head vouches for it.

    The frontier column is not signed itself. Resuming from one that someone
    planted (with records rewritten to match) would make the next signed head
    cover a forged history; so the writer refuses, fail closed, unless the frontier
    reproduces the size and root of a head that verifies under this key ring.
    """
    where = f"cannot resume audit stream {state.stream}"
    head = state.head
    if head is None:
        raise AuditUnavailable(f"{where}: its newest block has no signed head")
    try:
        tree = CompactRange.from_bytes(state.frontier)
    except ValueError as exc:
        raise AuditUnavailable(f"{where}: its newest block's frontier is damaged") from exc
    if tree.size != head.size or tree.size != state.size or tree.root() != head.root:
        raise AuditUnavailable(
            f"{where}: its newest block's frontier does not match its signed head "
            "(run `kroonika audit verify`)"
        )
    keys = keyring.public_keys()
    if head.kid not in keys:
        raise AuditUnavailable(
            f"{where}: its newest block is signed with key {head.kid}, which this key ring "
            "does not hold"
        )
    if not keys.verify(head.kid, head.signature, head.signed_bytes()):
        raise AuditUnavailable(
            f"{where}: its newest block's head signature does not verify "
            "(run `kroonika audit verify`)"
        )
    return tree


def check_stream_name(name: str) -> str:
    """``name`` if it can name a stream: 1..128 characters, none of them white space or
    a control, format or unassigned character. The name is in every record and in
    every rendering of it (table rows, syslog, sink message ids and headers), so a
    CR/LF, an escape or a bidi override could forge or hide a line. Letters of any
    language are fine (``tõrva-1``)."""
    if not name or len(name) > 128:
        raise ValueError("stream name must be 1..128 characters")
    if any(ch.isspace() or unicodedata.category(ch)[0] == "C" for ch in name):
        raise ValueError("stream name must not hold white space or control or format characters")
    return name


class StreamSealer:
    def __init__(
        self,
        store: AuditStore,
        stream: str,
        keyring: KeyRing,
        *,
        checkpoint_every: int = 1000,
        checkpoint_interval: float = 1.0,
        clock: Callable[[], int] = time.time_ns,
        subject_keys: SubjectKeys | None = None,
    ) -> None:
        check_stream_name(stream)
        self.store = store
        self.stream = stream
        self.keyring = keyring
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval_ns = int(checkpoint_interval * 1e9)
        self._clock = clock
        self._subject_keys = subject_keys
        state = store.stream_state(stream)
        if state is None:
            self.size = 0
            self.last_leaf = ZERO_HASH
            self.tree = CompactRange()
            self.last_checkpoint: Checkpoint | None = None
        else:
            self.size = state.size
            self.last_leaf = state.last_leaf
            self.tree = _resumable_tree(state, keyring)
            self.last_checkpoint = state.last_checkpoint
        self._last_checkpoint_ns = clock()
        self.on_checkpoint: Callable[[Checkpoint], None] | None = None

    def commit(self, records: list[dict[str, Any]]) -> list[SealedEvent]:
        """Seal ``records`` (dicts from ``AuditEvent.to_record``) and store them."""
        stream = self.stream
        tree = self.tree.copy()
        seq = self.size
        prev = self.last_leaf
        leaves: list[bytes] = []
        framed: list[bytes] = []  # the block's data: encode_records(bodies), built here
        sealed: list[SealedEvent] = []
        add_leaf, add_framed = leaves.append, framed.append
        add_sealed = sealed.append
        new_sealed = tuple.__new__  # SealedEvent(...) without the keyword machinery
        dumps, options, sha256, frame = (
            orjson.dumps,
            _CANONICAL_OPTIONS,
            hashlib.sha256,
            record_length,
        )
        index = _SEALED_FIELDS
        for rec in records:
            seq += 1
            rec["stream"] = stream
            rec["seq"] = seq
            rec["integrity"] = {"prev": prev.hex()}
            body = dumps(rec, option=options)  # canonical_record(rec), inline
            prev = sha256(b"\x00" + body).digest()  # leaf_hash(body), inline
            add_leaf(prev)
            add_framed(frame(len(body)))
            add_framed(body)
            add_sealed(new_sealed(SealedEvent, (stream, seq, *index(rec), body, prev)))
        tree.extend_unchecked(leaves)
        now_ns = self._clock()
        now = rfc3339_micro(now_ns)
        kid = self.keyring.active_kid
        head = TreeHead(stream, seq, tree.root(), now, kid)
        head = TreeHead(stream, seq, head.root, now, kid, self.keyring.sign(head.signed_bytes()))
        checkpoint = None
        last_cp_size = self.last_checkpoint.size if self.last_checkpoint else 0
        if (
            seq - last_cp_size >= self.checkpoint_every
            or now_ns - self._last_checkpoint_ns >= self.checkpoint_interval_ns
        ):
            checkpoint = self._checkpoint(head)
        block = Block(
            stream=stream,
            first_seq=self.size + 1,
            last_seq=seq,
            count=len(leaves),
            first_time=records[0]["time"],
            last_time=records[-1]["time"],
            data=b"".join(framed),
            head=head,
            frontier=tree.to_bytes(),
        )
        keys = self._subject_keys.take_pending() if self._subject_keys is not None else []
        try:
            self.store.append(block, checkpoint, keys)
        except BaseException:  # whatever went wrong, the new keys must not be lost
            if keys and self._subject_keys is not None:
                self._subject_keys.restore_pending(keys)
            raise
        self.tree = tree
        self.size = seq
        self.last_leaf = prev
        if checkpoint is not None:
            self.last_checkpoint = checkpoint
            self._last_checkpoint_ns = now_ns
            if self.on_checkpoint is not None:
                self.on_checkpoint(checkpoint)
        return sealed

    def _checkpoint(self, head: TreeHead) -> Checkpoint:
        prev = checkpoint_hash(self.last_checkpoint) if self.last_checkpoint else ZERO_HASH
        cp = Checkpoint(head.stream, head.size, head.root, head.time, head.kid, prev)
        return Checkpoint(
            cp.stream,
            cp.size,
            cp.root,
            cp.time,
            cp.kid,
            cp.prev,
            self.keyring.sign(cp.signed_bytes()),
        )

    def checkpoint_now(self) -> Checkpoint | None:
        """Publish a checkpoint at the current size if it has moved since the last."""
        if self.size == 0 or (self.last_checkpoint and self.last_checkpoint.size == self.size):
            return None
        now = rfc3339_micro(self._clock())
        head = TreeHead(self.stream, self.size, self.tree.root(), now, self.keyring.active_kid)
        cp = self._checkpoint(head)
        self.store.add_checkpoint(cp)
        self.last_checkpoint = cp
        return cp
