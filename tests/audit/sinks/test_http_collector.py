"""The test collector itself: nothing it opened outlives the test that started it."""

from __future__ import annotations

import asyncio

import pytest
from http_collector import RUNNING, Collector, stop_leftovers


@pytest.mark.asyncio
async def test_a_collector_a_test_left_running_is_stopped_with_its_connections() -> None:
    """What the sink tests' conftest runs after a test that failed before stopping its
    collector: the listener and a kept-alive connection are closed, not left to the GC
    (which reported them unclosed, an error, in whichever test it next ran in)."""
    hec = Collector(lambda r: (200, b"{}"))
    await hec.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", hec.port)
    try:
        writer.write(b"POST / HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}")
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        await stop_leftovers()
        rest = await asyncio.wait_for(reader.read(), 30)  # returns at EOF: closed
        assert rest.endswith(b"\r\n\r\n{}")
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", hec.port)
        assert id(hec) not in RUNNING
    finally:
        writer.close()
        await writer.wait_closed()
