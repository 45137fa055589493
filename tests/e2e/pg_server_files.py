"""What a PostgreSQL server keeps on disk, read by a test: its own log and the raw pages
of a database's tables, dead row versions included.

Both need a role that may read the server's files (a superuser, or a member of
``pg_read_server_files``; the tests connect as ``postgres``); the log is read through the
file system when the test's user may, else through ``pg_read_binary_file``. What cannot
be read raises :class:`Unreadable` with the reason, for the caller to skip that part and
say why.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

#: the largest piece ``pg_read_binary_file`` is asked for at once (a relation file
#: segment is 1 GiB at most)
CHUNK = 64 * 1024 * 1024


class Unreadable(Exception):
    """The server's file cannot be read by this test (the message says why)."""


def _one(conn: psycopg.Connection[Any], query: str, *args: Any) -> Any:
    row = conn.execute(query, args).fetchone()
    return None if row is None else row[0]


@dataclass
class ServerLog:
    """The server's log file, read from ``offset`` on (where it ended when located)."""

    url: str
    path: str
    offset: int
    marker: str
    prefix: str = ""  # log_line_prefix

    @classmethod
    def locate(cls, url: str) -> ServerLog:
        """The file the server writes its log to, found through its own settings: the
        collector's current file (``pg_current_logfile``, relative to ``data_directory``)
        or, without the collector, the server's standard error (``/proc/PID/fd/2`` of the
        postmaster named in ``postmaster.pid``). A marker is logged to prove it is the
        right file."""
        with psycopg.connect(url, autocommit=True) as conn:
            destination = _one(conn, "SHOW log_destination")
            data = _one(conn, "SHOW data_directory")
            if _one(conn, "SHOW logging_collector") == "on":
                current = _one(conn, "SELECT pg_current_logfile()")
                if current is None:
                    raise Unreadable(f"the log collector writes no file ({destination=})")
                path = os.path.join(data, current)
            elif "stderr" not in destination.split(","):
                raise Unreadable(f"the server logs only to {destination}, not to a file")
            else:
                path = _stderr_of_postmaster(conn, data)
            marker = f"kroonika sweep {uuid.uuid4().hex}"
            log = cls(url, path, 0, marker, _one(conn, "SHOW log_line_prefix"))
            log.offset = log.size(conn)
            conn.execute(f"DO $$ BEGIN RAISE LOG '{marker} start'; END $$")
        return log

    def size(self, conn: psycopg.Connection[Any]) -> int:
        try:
            return os.stat(self.path).st_size
        except PermissionError:
            pass
        try:
            return int(_one(conn, "SELECT size FROM pg_stat_file(%s)", self.path))
        except psycopg.errors.InsufficientPrivilege as exc:
            raise Unreadable(
                f"the server log {self.path} is readable neither by uid {os.getuid()} nor "
                f"through pg_read_binary_file ({exc.diag.message_primary})"
            ) from None

    def written(self) -> bytes:
        """What the server logged since it was located, up to a closing marker (both
        markers must be in it, or the wrong file or range was read)."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"DO $$ BEGIN RAISE LOG '{self.marker} end'; END $$")
            end = self.size(conn)
            start = self.offset if end >= self.offset else 0  # rotated: the new file
            try:
                with open(self.path, "rb") as fh:
                    fh.seek(start)
                    data = fh.read()
            except PermissionError:
                data = _read_server_file(conn, self.path, start, end - start)
        for part in ("start", "end"):
            if f"{self.marker} {part}".encode() not in data:
                raise AssertionError(f"{self.path} is not the server log: no {part} marker")
        return data

    def of(self, data: bytes, databases: Collection[str]) -> bytes:
        """The entries (each line, continuations included) logged in one of
        ``databases``, when each entry starts with the time and names its database
        (``log_line_prefix`` starts with ``%m`` or ``%t`` and has ``%d``); else all of
        ``data``, whoever logged it."""
        if not re.match(r"%[mtn]", self.prefix) or "%d" not in self.prefix:
            return data
        names = [name.encode() for name in databases]
        out, keep = [], False
        for line in data.splitlines(keepends=True):
            if re.match(rb"\d{4}-\d\d-\d\d |\d{10}", line):  # an entry starts
                keep = any(name in line for name in names)
            if keep:
                out.append(line)
        return b"".join(out)


def _stderr_of_postmaster(conn: psycopg.Connection[Any], data: str) -> str:
    try:
        pid = int(_one(conn, "SELECT pg_read_file('postmaster.pid')").split("\n", 1)[0])
    except psycopg.errors.InsufficientPrivilege:
        try:
            pid = int(Path(data, "postmaster.pid").read_text().split("\n", 1)[0])
        except OSError as exc:
            raise Unreadable(f"the server's pid is not readable here: {exc}") from None
    try:
        path = os.readlink(f"/proc/{pid}/fd/2")
    except OSError as exc:
        raise Unreadable(
            f"the server (pid {pid}) logs to its standard error, which cannot be looked up "
            f"here (another host or container, or another user's process): {exc}"
        ) from None
    if not path.startswith("/") or path == "/dev/null":
        raise Unreadable(f"the server (pid {pid}) logs to its standard error, {path}: no file")
    return path


def _read_server_file(conn: psycopg.Connection[Any], path: str, start: int, length: int) -> bytes:
    out = bytearray()
    try:
        while length > 0:
            piece = _one(
                conn, "SELECT pg_read_binary_file(%s, %s, %s)", path, start, min(length, CHUNK)
            )
            if not piece:
                break
            out += piece
            start += len(piece)
            length -= len(piece)
    except psycopg.errors.InsufficientPrivilege as exc:
        raise Unreadable(f"{path}: {exc.diag.message_primary}") from None
    return bytes(out)


def uncompressed(url: str) -> None:
    """Every column of the public tables stored without compression (``STORAGE
    EXTERNAL``) from now on: a value PostgreSQL compresses (pglz, from about 2 kB)
    could not be searched for in the raw pages."""
    with psycopg.connect(url, autocommit=True) as conn:
        columns = conn.execute(
            "SELECT c.relname, a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
            " WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')"
            " AND NOT c.relispartition AND a.attnum > 0 AND NOT a.attisdropped"
            " AND a.attstorage IN ('x', 'm')"
        ).fetchall()
        for table, column in columns:
            conn.execute(
                sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET STORAGE EXTERNAL").format(
                    sql.Identifier(table), sql.Identifier(column)
                )
            )


def raw_pages(url: str) -> dict[str, bytes]:
    """The files of every table in the database's public schema, its TOAST table and
    every index of both, as they are on disk after a ``CHECKPOINT``: the row versions an
    update or delete left behind (until a vacuum reuses their space) are in them, as are
    aborted inserts. Keyed ``TABLE RELATION``."""
    out: dict[str, bytes] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        try:
            conn.execute("CHECKPOINT")  # what is in shared buffers only reaches the files
        except psycopg.errors.InsufficientPrivilege as exc:
            raise Unreadable(f"CHECKPOINT: {exc.diag.message_primary}") from None
        files = conn.execute(
            "SELECT t.relname, r.relname, pg_relation_filepath(r.oid) FROM pg_class t"
            " JOIN pg_class r ON r.oid = t.oid OR r.oid = t.reltoastrelid OR r.oid IN"
            "  (SELECT indexrelid FROM pg_index WHERE indrelid IN (t.oid, t.reltoastrelid))"
            " WHERE t.relnamespace = 'public'::regnamespace AND t.relkind = 'r'"
            " ORDER BY 1, 2"
        ).fetchall()
        for table, relation, path in files:
            data = bytearray()
            segment, name = 0, path
            while (size := _segment_size(conn, name)) is not None:
                data += _read_server_file(conn, name, 0, size)
                segment += 1
                name = f"{path}.{segment}"
            out[f"{table} {relation}"] = bytes(data)
    return out


def _segment_size(conn: psycopg.Connection[Any], path: str) -> int | None:
    try:
        size = _one(conn, "SELECT size FROM pg_stat_file(%s, true)", path)
    except psycopg.errors.InsufficientPrivilege as exc:
        raise Unreadable(f"{path}: {exc.diag.message_primary}") from None
    return None if size is None else int(size)
