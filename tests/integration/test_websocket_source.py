"""The websocket adapter against a real server: what is a frame and what is a lost connection."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator

import pytest
from websockets.asyncio.server import ServerConnection, serve

from tradelake.adapters.websocket_source import MAX_FRAME_BYTES, connect
from tradelake.capture import ConnectionLost

pytestmark = pytest.mark.integration


@pytest.fixture
def url() -> Iterator[str]:
    """A server that sends an empty text frame, a text frame that is not UTF-8, a frame, one
    over the size cap, a frame, and then closes cleanly."""

    async def handler(ws: ServerConnection) -> None:
        await ws.send("")
        await ws.send(b"\xff\xfe not utf-8", text=True)
        await ws.send('{"id":1,"error":null,"result":"pong"}')
        await ws.send('{"pad":"' + "x" * MAX_FRAME_BYTES + '"}')
        await ws.send('{"id":2,"error":null,"result":"pong"}')
        await ws.close(1000, "bye")

    yield from serving(handler)


@pytest.fixture
def pinging_url() -> Iterator[str]:
    """A server that pings and says whether the pong came, then sends a message in three
    fragments, a binary frame, and goes silent."""

    async def handler(ws: ServerConnection) -> None:
        pong = await ws.ping(b"are you there")
        try:
            await asyncio.wait_for(pong, 2)
            await ws.send("pong came")
        except TimeoutError:
            await ws.send("no pong")
        await ws.send(['{"id":3,', '"result":', '"pong"}'])
        await ws.send(b"\x00\x01")
        await asyncio.sleep(1)

    yield from serving(handler)


def serving(handler: Callable[[ServerConnection], Awaitable[None]]) -> Iterator[str]:
    """A real websocket server on 127.0.0.1 in a thread; yields its URL."""
    stop = threading.Event()

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


def test_a_ping_is_answered_fragments_make_one_frame_and_silence_is_none(pinging_url: str) -> None:
    conn = connect(pinging_url, 5.0)
    try:
        assert conn.recv(3.0) == "pong came"
        assert conn.recv(2.0) == '{"id":3,"result":"pong"}'
        assert conn.recv(2.0) == b"\x00\x01"
        assert conn.recv(0.05) is None
        assert conn.recv(0.05) is None
    finally:
        conn.close()


@pytest.fixture
def oversized_fragments_url() -> Iterator[str]:
    """A server that sends a message over the cap in three fragments, then a frame."""
    half = "x" * (MAX_FRAME_BYTES // 2 + 1)

    async def handler(ws: ServerConnection) -> None:
        await ws.send(['{"pad":"', half, half + '"}'])
        await ws.send('{"id":4,"result":"pong"}')
        await asyncio.sleep(1)

    yield from serving(handler)


def test_a_message_over_the_cap_in_fragments_is_one_malformed_frame_and_not_kept(
    oversized_fragments_url: str,
) -> None:
    conn = connect(oversized_fragments_url, 5.0)
    try:
        oversized = conn.recv(3.0)
        size = len('{"pad":"') + 2 * (MAX_FRAME_BYTES // 2 + 1) + len('"}')
        assert oversized == f"oversized frame: {size:,} bytes > {MAX_FRAME_BYTES:,}".encode()
        assert conn.recv(2.0) == '{"id":4,"result":"pong"}', "the next frame is intact"
    finally:
        conn.close()
