"""The websocket adapter against a real server: what is a frame and what is a lost connection."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from websockets.asyncio.server import ServerConnection, serve

from tradelake.adapters.websocket_source import MAX_FRAME_BYTES, connect
from tradelake.capture import ConnectionLost

pytestmark = pytest.mark.integration


@pytest.fixture
def url() -> Iterator[str]:
    """A server that sends an empty text frame, a text frame that is not UTF-8, a frame, one
    over the size cap, a frame, and then closes cleanly."""
    stop = threading.Event()

    async def handler(ws: ServerConnection) -> None:
        await ws.send("")
        await ws.send(b"\xff\xfe not utf-8", text=True)
        await ws.send('{"id":1,"error":null,"result":"pong"}')
        await ws.send('{"pad":"' + "x" * MAX_FRAME_BYTES + '"}')
        await ws.send('{"id":2,"error":null,"result":"pong"}')
        await ws.close(1000, "bye")

    async def main(found: threading.Event, where: list[str]) -> None:
        async with serve(handler, "127.0.0.1", 0, close_timeout=0.1) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            where.append(f"ws://127.0.0.1:{port}")
            found.set()
            while not stop.is_set():
                await asyncio.sleep(0.02)

    found, where = threading.Event(), list[str]()
    thread = threading.Thread(target=asyncio.run, args=(main(found, where),), daemon=True)
    thread.start()
    assert found.wait(5)
    yield where[0]
    stop.set()
    thread.join(5)


def test_empty_and_broken_text_frames_are_frames_and_a_close_frame_is_lost(url: str) -> None:
    conn = connect(url, 5.0)
    try:
        assert conn.recv(2.0) == ""
        assert conn.recv(2.0) == b"\xff\xfe not utf-8"
        assert conn.recv(2.0) == '{"id":1,"error":null,"result":"pong"}'
        oversized = conn.recv(2.0)  # the feed's to count as malformed, as bytes
        assert isinstance(oversized, bytes)
        assert oversized.startswith(b"oversized frame")
        assert conn.recv(2.0) == '{"id":2,"error":null,"result":"pong"}'
        with pytest.raises(ConnectionLost, match="closed by peer"):
            conn.recv(2.0)
    finally:
        conn.close()
