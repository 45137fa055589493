"""Records the audit store keeps, and the protocol every store implements."""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import orjson

_LEN = struct.Struct(">I")
#: The 4-byte length prefix of one record in a block's payload (see encode_records).
record_length = _LEN.pack


def encode_records(bodies: Sequence[bytes]) -> bytes:
    """A block's payload: each canonical record prefixed by its 4-byte length."""
    pack = _LEN.pack
    return b"".join(pack(len(b)) + b for b in bodies)


def decode_records(data: bytes) -> list[bytes]:
    out: list[bytes] = []
    pos, end = 0, len(data)
    unpack = _LEN.unpack_from
    while pos < end:
        if pos + 4 > end:
            raise ValueError(f"truncated length prefix at byte {pos}")
        (n,) = unpack(data, pos)
        pos += 4
        if pos + n > end:
            raise ValueError(f"record at byte {pos} runs past the block end")
        out.append(data[pos : pos + n])
        pos += n
    return out


@dataclass(frozen=True, slots=True)
class TreeHead:
    """A signed statement of one stream's Merkle tree: stream, size, root, time, kid."""

    stream: str
    size: int
    root: bytes
    time: str
    kid: str
    signature: bytes = b""

    def signed_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "kind": "kroonika.tree_head/1",
                "kid": self.kid,
                "root": self.root.hex(),
                "size": self.size,
                "stream": self.stream,
                "time": self.time,
            },
            option=orjson.OPT_SORT_KEYS,
        )


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A published tree head that also chains to the previous checkpoint."""

    stream: str
    size: int
    root: bytes
    time: str
    kid: str
    prev: bytes  # SHA-256 of the previous checkpoint's signed bytes, 32 zero bytes first
    signature: bytes = b""

    def signed_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "kind": "kroonika.checkpoint/1",
                "kid": self.kid,
                "prev": self.prev.hex(),
                "root": self.root.hex(),
                "size": self.size,
                "stream": self.stream,
                "time": self.time,
            },
            option=orjson.OPT_SORT_KEYS,
        )

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "kind": "kroonika.checkpoint/1",
                "kid": self.kid,
                "prev": self.prev.hex(),
                "root": self.root.hex(),
                "signature": self.signature.hex(),
                "size": self.size,
                "stream": self.stream,
                "time": self.time,
            },
            option=orjson.OPT_SORT_KEYS,
        )

    @classmethod
    def from_dict(cls, doc: dict[str, object]) -> Checkpoint:
        return cls(
            stream=str(doc["stream"]),
            size=int(doc["size"]),  # type: ignore[call-overload]
            root=bytes.fromhex(str(doc["root"])),
            time=str(doc["time"]),
            kid=str(doc["kid"]),
            prev=bytes.fromhex(str(doc["prev"])),
            signature=bytes.fromhex(str(doc["signature"])),
        )


@dataclass(frozen=True, slots=True)
class Block:
    """One durable commit of one stream: its records and the signed head after it.

    ``first_time``/``last_time``/``count``/``first_seq``/``last_seq`` are indexed
    columns derived from the records; the verifier checks them against the records.
    """

    stream: str
    first_seq: int
    last_seq: int
    count: int
    first_time: str
    last_time: str
    data: bytes
    head: TreeHead
    frontier: bytes
    rowid: int = 0

    def records(self) -> list[bytes]:
        return decode_records(self.data)


@dataclass(frozen=True, slots=True)
class NewKey:
    """A subject data key to store with the block whose events first use it."""

    key_id: str
    subject: str
    wrapped: bytes
    created: str


def base_statement(
    stream: str, size: int, root: bytes, frontier: bytes, last_leaf: bytes, purged: str, kid: str
) -> bytes:
    """What the retention job signs when it purges a stream up to ``size``: where
    the stream starts again. Without the signature anyone who can write the
    database could delete a stream's recent records and leave a base behind."""
    return orjson.dumps(
        {
            "frontier": frontier.hex(),
            "kid": kid,
            "kind": "kroonika.retained_base/1",
            "last_leaf": last_leaf.hex(),
            "purged": purged,
            "root": root.hex(),
            "size": size,
            "stream": stream,
        },
        option=orjson.OPT_SORT_KEYS,
    )


@dataclass(frozen=True, slots=True)
class StreamState:
    """Where a stream stands: enough to resume writing it."""

    stream: str
    size: int  # number of leaves = last seq
    last_leaf: bytes
    frontier: bytes
    last_checkpoint: Checkpoint | None
    head: TreeHead | None = None  # the newest block's signed head


class AuditStore(Protocol):
    """An append-only store of blocks and checkpoints (SQLite or PostgreSQL)."""

    url: str
    read_only: bool

    def stream_state(self, stream: str) -> StreamState | None: ...

    def append(
        self, block: Block, checkpoint: Checkpoint | None, keys: Sequence[NewKey] = ()
    ) -> None: ...

    def add_checkpoint(self, checkpoint: Checkpoint) -> None: ...

    def streams(self) -> list[str]: ...

    def blocks(
        self,
        stream: str | None = None,
        *,
        after_seq: int = 0,
        from_time: str | None = None,
        to_time: str | None = None,
        after_id: int = 0,
    ) -> Iterator[Block]: ...

    def checkpoints(self, stream: str | None = None) -> list[Checkpoint]: ...

    def close(self) -> None: ...
