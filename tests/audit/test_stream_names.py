"""A writer refuses a stream name with characters that could forge or hide output
lines: the name is in every record and every rendering of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from kroonika.audit import KeyRing, SqlAuditStore
from kroonika.audit._sealer import StreamSealer


@pytest.mark.parametrize(
    "name", ["a\r\nb", "esc\x1b[2J", "tab\tname", "bidi\u202eevil", "", "x" * 129]
)
def test_the_sealer_refuses_a_stream_name_that_could_forge_output(
    tmp_path: Path, name: str
) -> None:
    store = SqlAuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    store.upgrade()
    try:
        with pytest.raises(ValueError, match="stream name"):
            StreamSealer(store, name, KeyRing.open(tmp_path / "keys", create=True))
    finally:
        store.close()


def test_the_sealer_takes_a_name_with_letters_of_any_language(tmp_path: Path) -> None:
    store = SqlAuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    store.upgrade()
    try:
        sealer = StreamSealer(store, "tõrva-1", KeyRing.open(tmp_path / "keys", create=True))
        assert sealer.stream == "tõrva-1"
    finally:
        store.close()
