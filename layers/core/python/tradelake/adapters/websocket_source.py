"""The trade source adapter: websocket-client, to Phemex or to the simulator.

websocket-client is synchronous and small (it is in the Lambda layer), which suits the
single-threaded capture loop: a receive with a socket timeout is the loop's only wait.
"""

from __future__ import annotations

import contextlib
import socket

import websocket

from tradelake.capture import ConnectionLost

_LOST = (websocket.WebSocketException, OSError)
MAX_FRAME_BYTES = 4 * 1024 * 1024
"""The largest frame taken (a 1,000-row snapshot is ~100 KiB); past it, a malformed frame."""


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

    def send(self, text: str) -> None:
        try:
            self._ws.send(text)
        except _LOST as exc:
            raise ConnectionLost(f"send failed: {exc!r}") from exc

    def recv(self, timeout_s: float) -> str | bytes | None:
        """The next data frame; a close frame is ``ConnectionLost``, an empty text frame is ``""``.

        ``recv_data`` rather than ``recv``: websocket-client's ``recv`` answers a close frame AND
        an empty text frame with ``""``, and a text frame that is not UTF-8 with an exception.
        Such a frame is the feed's to count as malformed (as bytes), not a lost connection.
        """
        try:
            self._ws.settimeout(max(timeout_s, 0.001))
            opcode, data = self._ws.recv_data()
        except websocket.WebSocketTimeoutException:
            return None
        except _LOST as exc:
            raise ConnectionLost(f"{type(exc).__name__}: {exc}") from exc
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            raise ConnectionLost("closed by peer")
        if len(data) > MAX_FRAME_BYTES:  # not JSON: the feed counts it as a malformed frame
            return f"oversized frame: {len(data):,} bytes > {MAX_FRAME_BYTES:,}".encode()
        if isinstance(data, str):
            return data
        if opcode == websocket.ABNF.OPCODE_TEXT:
            try:
                return str(data.decode("utf-8"))
            except UnicodeDecodeError:
                return bytes(data)
        return bytes(data)

    def close(self) -> None:
        with contextlib.suppress(*_LOST):
            self._ws.close(timeout=0.2)


def connect(url: str, timeout_s: float) -> WebsocketConnection:
    """``tradelake.capture.Connect`` for real sockets; raises OSError when unreachable."""
    try:
        return WebsocketConnection(url, timeout_s)
    except websocket.WebSocketException as exc:
        raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc
