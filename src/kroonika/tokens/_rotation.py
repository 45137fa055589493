"""Signing-key rotations that are recorded before the new key can sign."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from kroonika.tokens._keys import SigningKeyRing

Record = Callable[[str | None, str], Awaitable[object]]


async def rotate_recorded(
    keys: SigningKeyRing,
    record: Record,
    *,
    due_only: bool = False,
    immediate: bool = False,
) -> tuple[str | None, str] | None:
    """Rotate so that no unrecorded key ever signs: the new key is staged (published,
    signing nothing), ``record(old, new)`` writes its ``key.rotate``, then the key is
    activated (at once with ``immediate`` or for a first key, else after the publish lead
    since it was published). If recording fails the key is discarded and the error
    propagates. With ``due_only`` nothing happens unless the newest key is older than
    the rotation interval (``None`` then)."""
    if due_only:
        rotated = await asyncio.to_thread(keys.rotate_if_due, staged=True)
        if rotated is None:
            return None
    else:
        rotated = await asyncio.to_thread(keys.rotate, staged=True)
    old, new = rotated
    try:
        await record(old, new)
    except BaseException:
        await asyncio.to_thread(keys.discard, new)  # staged: it never signed
        raise
    await asyncio.to_thread(keys.activate, new, immediate=immediate or old is None)
    return rotated
