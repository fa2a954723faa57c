"""Scaling per market type is exact, and bad rows are counted without losing their neighbours."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradelake.markets import (
    Instrument,
    Market,
    UnknownSymbolError,
    instrument,
    instruments_from_products,
    market_of,
)
from tradelake.model import EARLIEST_NS, FIXED_ONE, LATEST_NS, Fill, format_fixed, parse_fixed
from tradelake.normalise import fills


def as_decimal(value: int) -> Decimal:
    return Decimal(value) / FIXED_ONE


def test_inverse_price_is_scaled_by_ten_to_the_four_and_qty_is_contracts() -> None:
    # YFIUSD, cryptofeed capture: priceEp 329915000 -> 32991.5, 40 contracts
    rows, bad = fills(instrument("YFIUSD"), [[1625342240710279103, "Buy", 329915000, 40]])
    assert bad == 0
    assert rows == [Fill(1625342240710279103, "buy", 329915 * FIXED_ONE // 10, 40 * FIXED_ONE)]
    assert as_decimal(rows[0].price) == Decimal("32991.5")


def test_spot_price_and_qty_are_scaled_by_ten_to_the_eight() -> None:
    rows, _ = fills(instrument("sGRTUSDT"), [[1625342233633393476, "Sell", 67562000, 177500000000]])
    assert (format_fixed(rows[0].price), format_fixed(rows[0].qty)) == ("0.67562", "1775")
    assert rows[0].side == "sell"


def test_perpetual_decimal_strings_are_taken_exactly() -> None:
    rows, _ = fills(instrument("XRPUSDT"), [[1669198857616162039, "Buy", "0.3758", "244.65"]])
    assert as_decimal(rows[0].price) == Decimal("0.3758")
    assert as_decimal(rows[0].qty) == Decimal("244.65")


def test_market_types_and_scales_come_from_the_products_list() -> None:
    products = {
        "code": 0,
        "data": {
            "products": [
                {"symbol": "BTCUSD", "type": "Perpetual", "priceScale": 4},
                {"symbol": "sFOOUSDT", "type": "Spot", "priceScale": 6, "valueScale": 2},
                {"symbol": "FOOUSDT", "type": "Spot", "priceScale": 8, "valueScale": 8},
                {"symbol": "ETHUSD", "type": "Perpetual", "priceScale": 11},  # unusable scale
                {"symbol": "XUSD", "type": "Option", "priceScale": 4},
                "junk",
            ],
            "perpProductsV2": [{"symbol": "sBARUSDT", "type": "PerpetualV2", "priceScale": 0}],
        },
    }
    found = instruments_from_products(products)
    assert found == {
        "BTCUSD": Instrument("BTCUSD", Market.INVERSE, 4, 0),
        "sFOOUSDT": Instrument("sFOOUSDT", Market.SPOT, 6, 2),
        "FOOUSDT": Instrument("FOOUSDT", Market.SPOT, 8, 8),
        "sBARUSDT": Instrument("sBARUSDT", Market.PERPETUAL, None, None),
    }
    # the list beats the shape rule both ways
    assert instrument("FOOUSDT", found).subscribe_method == "trade.subscribe"
    assert instrument("sBARUSDT", found).rows_key == "trades_p"
    assert instrument("ETHUSD", found) == instrument("ETHUSD")  # not usable: the fallback
    rows, _ = fills(instrument("sFOOUSDT", found), [[EARLIEST_NS, "Buy", 1234567, 305]])
    assert (format_fixed(rows[0].price), format_fixed(rows[0].qty)) == ("1.234567", "3.05")
    assert instruments_from_products({"data": None}) == {}


@pytest.mark.parametrize(
    ("symbol", "market"),
    [
        ("s1INCHUSDT", Market.SPOT),
        ("sBTCUSDT", Market.SPOT),
        ("sBTCUSD", Market.SPOT),
        ("BTCUSDT", Market.PERPETUAL),
        ("1INCHUSDT", Market.PERPETUAL),
        ("BTCUSD", Market.INVERSE),
    ],
)
def test_without_the_products_list_the_shape_decides(symbol: str, market: Market) -> None:
    assert market_of(symbol) is market


@pytest.mark.parametrize("symbol", ["btcusd", "sandUSDT", "BTCUSD\n", "B", "BT$USD", "sS", "é1"])
def test_a_symbol_of_another_shape_is_refused(symbol: str) -> None:
    """The one shape the capture writes and the catalog registers (markets.SYMBOL_PATTERN)."""
    with pytest.raises(UnknownSymbolError, match="not a Phemex symbol"):
        market_of(symbol)


T0 = 1_795_737_600_000_000_000  # 2026-11-27T00:00Z


def test_snapshot_rows_newest_first_come_out_oldest_first() -> None:
    rows, _ = fills(
        instrument("BTCUSD"), [[T0 + 3, "Buy", 10, 1], [T0 + 2, "Sell", 10, 1], [T0, "Buy", 10, 1]]
    )
    assert [r.ts_ns - T0 for r in rows] == [0, 2, 3]


@pytest.mark.parametrize(
    "bad_row",
    [
        [T0, "Bid", 10, 1],  # unknown side
        [T0, "Buy", 10],  # short
        [str(T0), "Buy", 10, 1],  # ts as text
        [T0, "Buy", 10.5, 1],  # float price: exactness already lost
        [T0, "Buy", "10", 1],  # a decimal string under trades: not this market's shape
        [T0, "Buy", -10, 1],  # negative price
        [T0, "Buy", 0, 1],  # zero price
        [T0, "Buy", 10, 0],  # zero quantity
        [1, "Buy", 10, 1],  # 1 ns after 1970: a unit mistake, not a trade
        [LATEST_NS + 1, "Buy", 10, 1],  # beyond 2100
        [2**64, "Buy", 10, 1],  # would overflow int64 in Parquet
        {"ts": 1},  # not a row
        None,
    ],
)
def test_a_bad_row_is_counted_and_its_neighbours_survive(bad_row: object) -> None:
    rows, bad = fills(
        instrument("BTCUSD"), [[T0 + 5, "Buy", 10, 1], bad_row, [T0 + 4, "Sell", 20, 2]]
    )
    assert bad == 1
    assert [r.ts_ns - T0 for r in rows] == [4, 5]


def test_a_field_added_after_the_fourth_is_ignored() -> None:
    rows = [[T0, "Buy", 10, 1, "new"], [T0 + 1, "Sell", 20, 2]]
    assert fills(instrument("BTCUSD"), rows) == (
        [Fill(T0, "buy", 10 * 10**6, FIXED_ONE), Fill(T0 + 1, "sell", 20 * 10**6, 2 * FIXED_ONE)],
        0,
    )


@pytest.mark.parametrize(
    "bad_row",
    [
        [T0, "Buy", 20700.3, "1"],  # a float: exactness already lost
        [T0, "Buy", "1e3", "1"],  # an exponent is not a plain decimal
        [T0, "Buy", 20700, "1"],  # an integer under trades_p: would be a priceEp, scaled wrong
        [T0, "Buy", "1.5", 2],
        [T0, "Buy", "0", "1"],  # zero price
        [T0, "Buy", "-.", "1"],
        [T0, "Buy", "1.5", "+."],
        [T0, "Buy", "-1.5", "1"],
    ],
)
def test_perpetual_takes_decimal_strings_only(bad_row: list[object]) -> None:
    rows, bad = fills(instrument("BTCUSDT"), [bad_row, [T0 + 2, "Buy", "1.5", "2"]])
    assert (bad, len(rows)) == (1, 1)


def test_the_window_bounds_timestamps_inclusively() -> None:
    row = [[T0, "Buy", 10, 1]]
    assert fills(instrument("BTCUSD"), row, (T0, T0)) == (
        [Fill(T0, "buy", 10 * 10**6, FIXED_ONE)],
        0,
    )
    assert fills(instrument("BTCUSD"), row, (T0 + 1, T0 + 9))[1] == 1
    assert fills(instrument("BTCUSD"), row, (T0 - 9, T0 - 1))[1] == 1
    # a window never reaches outside 2000..2100
    assert fills(instrument("BTCUSD"), [[1, "Buy", 10, 1]], (0, 2**70))[1] == 1


def test_a_value_beyond_decimal_28_10_is_rejected_not_rounded() -> None:
    _, bad = fills(instrument("BTCUSDT"), [[T0, "Buy", "1" + "0" * 18, "1"]])
    assert bad == 1
    _, bad = fills(instrument("BTCUSDT"), [[T0, "Buy", "12345678901.00000000001", "1"]])
    assert bad == 1


@given(
    st.decimals(min_value=Decimal("-1e17"), max_value=Decimal("1e17"), places=10, allow_nan=False)
)
def test_fixed_point_round_trips_every_decimal_with_ten_places(value: Decimal) -> None:
    text = format(value, "f")
    fixed = parse_fixed(text)
    assert as_decimal(fixed) == value
    assert parse_fixed(format_fixed(fixed)) == fixed
    assert Decimal(format_fixed(fixed)) == value


@pytest.mark.parametrize(
    "text",
    [
        *("", ".", "+", "-", "+.", "-.", " 1", "1e3", "0x1", "1.2.3"),
        # what int() takes but a plain decimal is not: the shortcut for plain text must refuse
        *("1_000", "1.5_0", "1 ", "\u0663", "1.\u0663", "\u00b2"),
    ],
)
def test_text_without_a_digit_or_with_anything_else_is_not_a_decimal(text: str) -> None:
    with pytest.raises(ValueError, match="not a plain decimal"):
        parse_fixed(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("5.", 5 * FIXED_ONE),
        (".5", FIXED_ONE // 2),
        ("-.5", -FIXED_ONE // 2),
        ("007.50", 75 * FIXED_ONE // 10),
        ("1." + "0" * 12, FIXED_ONE),  # zeros past the tenth place lose nothing
    ],
)
def test_one_digit_on_either_side_of_the_point_is_enough(text: str, value: int) -> None:
    assert parse_fixed(text) == value
