"""The trade source adapter: websocket-client, to Phemex or to the simulator.

websocket-client is synchronous and small (it is in the Lambda layer), which suits the
single-threaded capture loop: a receive with a socket timeout is the loop's only wait.
It opens the connection (handshake, TLS) and sends; frames are read here, from a buffer filled
by large socket reads: websocket-client reads a frame's header, length and payload with a
socket read each (each with a poll, for the timeout), which was most of the capture's CPU a
frame (docs/BENCHMARKS.md, section 6). One read now brings every frame that has arrived.
"""

from __future__ import annotations

import contextlib
import socket
import time

import websocket

from tradelake.capture import ConnectionLost

_LOST = (websocket.WebSocketException, OSError)
MAX_FRAME_BYTES = 4 * 1024 * 1024
"""The largest frame taken (a 1,000-row snapshot is ~100 KiB); past it, a malformed frame."""
READ_BYTES = 64 * 1024
"""The most one socket read takes: a burst's frames at once, a snapshot in two or three."""
GATHER_S = 0.005
"""A read that brought data is followed by the next no sooner than this after it began: in a
burst one read (one wake-up) takes several frames instead of one. Trades wait at most this long
more; Firehose buffers them for seconds anyway. At a calm rate frames are further apart, and a
read is not delayed. A receive never waits past its timeout for it."""
_CONT, _TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class WebsocketConnection:
    """One websocket; every way it can fail surfaces as ``ConnectionLost``."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self._ws = websocket.create_connection(
            url,
            timeout=timeout_s,
            enable_multithread=False,
            skip_utf8_validation=True,  # recv decodes, and a bad frame is the feed's to count
            sockopt=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
        )
        sock = self._ws.sock
        assert sock is not None  # a handshake that failed has raised
        self._sock: socket.socket = sock
        self._buf = bytearray()
        """Bytes read and not yet framed (the handshake reads its response line by line, so
        nothing after it is left inside websocket-client)."""
        self._next_read = 0.0
        """The monotonic time before which the socket is not read (``GATHER_S``)."""
        self._parts: list[bytes] = []
        self._opcode = 0
        """A fragmented message so far, and its opcode (0: none under way)."""
        self._size = 0
        """The size of the message being read; past ``MAX_FRAME_BYTES`` its bytes are dropped."""
        self._skip = 0
        """Payload bytes of an oversized frame still to drop as they come (never buffered)."""

    def send(self, text: str) -> None:
        try:
            self._ws.send(text)
        except _LOST as exc:
            raise ConnectionLost(f"send failed: {exc!r}") from exc

    def recv(self, timeout_s: float) -> str | bytes | None:
        """The next data frame; a close frame is ``ConnectionLost``, an empty text frame is ``""``.

        A text frame that is not UTF-8, or a message over ``MAX_FRAME_BYTES``, comes as bytes:
        the feed's to count as malformed, not a lost connection. A ping is answered; a pong, or
        a fragment of a message, is not a frame of its own.
        """
        deadline = 0.0
        while True:
            frame = self._frame()
            if frame is None:
                now = time.monotonic()
                if not deadline:
                    deadline = now + max(timeout_s, 0.001)
                if now < self._next_read:  # a burst: let its frames gather for one read
                    time.sleep(min(self._next_read, deadline) - now)
                    now = time.monotonic()
                if now >= deadline or not self._read(deadline - now):
                    return None
                self._next_read = now + GATHER_S
                continue
            opcode, fin, payload, size = frame
            if opcode == _CLOSE:
                with contextlib.suppress(*_LOST):
                    self._ws.send_close()
                raise ConnectionLost("closed by peer")
            if opcode == _PING:
                if not fin:
                    raise ConnectionLost("protocol error: a fragmented ping")
                try:
                    self._ws.pong(payload)
                except _LOST as exc:
                    raise ConnectionLost(f"pong failed: {exc!r}") from exc
                continue
            if opcode == _PONG:
                continue
            if opcode not in (_CONT, _TEXT, _BINARY) or (opcode == _CONT) == (not self._opcode):
                raise ConnectionLost(f"protocol error: a frame of opcode {opcode} out of place")
            self._size += size
            if not fin or self._opcode:
                self._opcode = self._opcode or opcode
                if self._size <= MAX_FRAME_BYTES:
                    self._parts.append(payload)
                else:
                    self._parts.clear()  # too big to keep: only its size is reported
                if not fin:
                    continue
                opcode, payload = self._opcode, b"".join(self._parts)
                self._opcode, self._parts = 0, []
            size, self._size = self._size, 0
            if size > MAX_FRAME_BYTES:  # not JSON: the feed counts it as a malformed frame
                return f"oversized frame: {size:,} bytes > {MAX_FRAME_BYTES:,}".encode()
            return _message(opcode, payload)

    def _frame(self) -> tuple[int, bool, bytes, int] | None:
        """The next whole frame in the buffer (opcode, fin, unmasked payload, size), or None.

        A frame over ``MAX_FRAME_BYTES`` comes at once with an empty payload and its size, and
        its payload is dropped as it arrives: a peer cannot make this buffer grow without bound.
        """
        buf = self._buf
        if self._skip:
            dropped = min(self._skip, len(buf))
            del buf[:dropped]
            self._skip -= dropped
            if self._skip:
                return None
        have = len(buf)
        if have < 2:
            return None
        head, size = buf[0], buf[1]
        if head & 0x70:
            raise ConnectionLost("protocol error: reserved bits set (no extension was agreed)")
        length, start = size & 0x7F, 2
        if length == 126:
            start += 2
            if have < 4:
                return None
            length = int.from_bytes(buf[2:start], "big")
        elif length == 127:
            start += 8
            if have < 10:
                return None
            length = int.from_bytes(buf[2:start], "big")
        mask = b""
        if size & 0x80:  # servers do not mask, but a masked frame is still a frame
            if have < start + 4:
                return None
            mask, start = bytes(buf[start : start + 4]), start + 4
        if length > 125 and head & 0x08:
            raise ConnectionLost("protocol error: a control frame over 125 bytes")
        if length > MAX_FRAME_BYTES:
            del buf[:start]
            self._skip = length
            return head & 0x0F, bool(head & 0x80), b"", length
        end = start + length
        if have < end:
            return None
        payload = bytes(buf[start:end])
        del buf[:end]  # O(1): a bytearray drops its head by moving its start
        if mask:
            payload = websocket.ABNF.mask(mask, payload)
        return head & 0x0F, bool(head & 0x80), payload, length

    def _read(self, timeout_s: float) -> bool:
        """Appends what the socket has (waiting at most ``timeout_s``); False if nothing came."""
        try:
            self._sock.settimeout(timeout_s)
            data = self._sock.recv(READ_BYTES)
        except TimeoutError:  # socket.timeout; TLS reads time out with it too
            return False
        except OSError as exc:
            raise ConnectionLost(f"{type(exc).__name__}: {exc}") from exc
        if not data:
            raise ConnectionLost("connection closed without a close frame")
        self._buf += data
        return True

    def close(self) -> None:
        with contextlib.suppress(*_LOST):
            self._ws.close(timeout=0.2)
        self._sock.close()  # after a close frame ``close`` sends nothing and keeps the socket


def _message(opcode: int, data: bytes) -> str | bytes:
    if opcode == _TEXT:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data
    return data


def connect(url: str, timeout_s: float) -> WebsocketConnection:
    """``tradelake.capture.Connect`` for real sockets; raises OSError when unreachable."""
    try:
        return WebsocketConnection(url, timeout_s)
    except websocket.WebSocketException as exc:
        raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc
