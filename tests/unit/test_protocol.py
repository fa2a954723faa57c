"""Every real Phemex message in the fixtures parses, and our requests match Phemex's own."""

from __future__ import annotations

import orjson
import pytest

from tradelake import protocol
from tradelake.markets import Market, instrument, market_of
from tradelake.normalise import fills


def test_every_fixture_line_is_understood(fixture_lines: list[tuple[str, int, str]]) -> None:
    assert len(fixture_lines) == 56
    trade_rows = 0
    for name, number, line in fixture_lines:
        msg = protocol.parse(line)
        raw = orjson.loads(line)
        if "method" in raw:  # a request a client sent: we must be able to send the same
            assert msg is None, (name, number)
            symbol = raw["params"][0] if raw["params"] else None
            if symbol is None:
                assert protocol.ping(raw["id"]) == line, (name, number)
            else:
                assert protocol.subscribe(raw["id"], instrument(symbol)) == line, (name, number)
        elif isinstance(msg, protocol.TradesMessage):
            rows, bad = fills(instrument(msg.symbol), msg.rows)
            assert (len(rows), bad) == (len(msg.rows), 0), (name, number)
            assert msg.symbol == raw["symbol"]
            trade_rows += len(rows)
        else:
            assert isinstance(msg, protocol.Reply), (name, number)
            assert msg.id == raw["id"]
    assert trade_rows == 2016 + 6 + 1028  # inverse + perpetual + spot rows, per SOURCES.md


def test_request_methods_follow_the_market_type() -> None:
    assert market_of("BTCUSD") is Market.INVERSE
    assert market_of("BTCUSDT") is Market.PERPETUAL
    assert market_of("sBTCUSDT") is Market.SPOT
    assert protocol.subscribe(7, instrument("BTCUSDT")) == (
        '{"id":7,"method":"trade_p.subscribe","params":["BTCUSDT"]}'
    )
    assert protocol.unsubscribe(8, instrument("sBTCUSDT")) == (
        '{"id":8,"method":"trade.unsubscribe","params":["sBTCUSDT"]}'
    )
    assert protocol.unsubscribe(9, instrument("BTCUSDT")).count("trade_p.unsubscribe") == 1


def test_error_reply_carries_code_and_message(fixture_lines: list[tuple[str, int, str]]) -> None:
    errors = [
        msg
        for _, _, line in fixture_lines
        if isinstance(msg := protocol.parse(line), protocol.Reply) and msg.error is not None
    ]
    assert [(e.id, e.error) for e in errors] == [(1, {"code": 6001, "message": "invalid argument"})]


def test_unknown_keys_and_shapes_are_ignored() -> None:
    line = (
        '{"dts":1,"mts":2,"sequence":5,"symbol":"BTCUSDT","type":"incremental",'
        '"trades_p":[[1666856076819029800,"Sell","20700.3","0.649"]],"extra":{"a":[1]}}'
    )
    msg = protocol.parse(line)
    assert isinstance(msg, protocol.TradesMessage)
    assert (msg.symbol, msg.kind, msg.seq, len(msg.rows)) == ("BTCUSDT", "incremental", 5, 1)
    assert protocol.parse('{"foo":1}') is None
    assert protocol.parse(b'{"id":3,"error":null,"result":"pong"}') == protocol.Reply(
        3, "pong", None
    )


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        '{"symbol":"BTCUSD","type":"incremental","trades":[[1',
        "[1,2,3]",
        '{"symbol":"BTCUSD","type":"delta","trades":[]}',
        '{"symbol":7,"type":"snapshot","trades":[]}',
        '{"symbol":"BTCUSD","type":"snapshot","trades":{}}',
        '{"symbol":"BTCUSD","type":"snapshot","trades":[],"sequence":"x"}',
        '{"id":"a","error":null,"result":1}',
        '{"id":1,"error":"boom","result":null}',
    ],
)
def test_malformed_frames_raise_a_clear_error(frame: str) -> None:
    with pytest.raises(protocol.MalformedFrame):
        protocol.parse(frame)
