"""Scaling per market type is exact, and bad rows are counted without losing their neighbours."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradelake.markets import instrument, scales_from_products
from tradelake.model import FIXED_ONE, Fill, format_fixed, parse_fixed
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


def test_scales_from_the_products_list_override_the_fallback() -> None:
    products = {
        "code": 0,
        "data": {
            "products": [
                {"symbol": "BTCUSD", "type": "Perpetual", "priceScale": 4},
                {"symbol": "sFOOUSDT", "type": "Spot", "priceScale": 6, "valueScale": 2},
                {"symbol": "BTCUSDT", "type": "PerpetualV2", "priceScale": 4},
                "junk",
            ]
        },
    }
    scales = scales_from_products(products)
    assert scales == {"BTCUSD": (4, 0), "sFOOUSDT": (6, 2)}
    rows, _ = fills(instrument("sFOOUSDT", scales), [[1, "Buy", 1234567, 305]])
    assert (format_fixed(rows[0].price), format_fixed(rows[0].qty)) == ("1.234567", "3.05")


def test_snapshot_rows_newest_first_come_out_oldest_first() -> None:
    rows, _ = fills(
        instrument("BTCUSD"), [[3, "Buy", 10, 1], [2, "Sell", 10, 1], [1, "Buy", 10, 1]]
    )
    assert [r.ts_ns for r in rows] == [1, 2, 3]


@pytest.mark.parametrize(
    "bad_row",
    [
        [1, "Bid", 10, 1],  # unknown side
        [1, "Buy", 10],  # short
        ["1", "Buy", 10, 1],  # ts as text
        [1, "Buy", 10.5, 1],  # float price: exactness already lost
        [1, "Buy", -10, 1],  # negative price
        [1, "Buy", 10, 0],  # zero quantity
        {"ts": 1},  # not a row
        None,
    ],
)
def test_a_bad_row_is_counted_and_its_neighbours_survive(bad_row: object) -> None:
    rows, bad = fills(instrument("BTCUSD"), [[5, "Buy", 10, 1], bad_row, [4, "Sell", 20, 2]])
    assert bad == 1
    assert [r.ts_ns for r in rows] == [4, 5]


@pytest.mark.parametrize("bad_row", [[1, "Buy", 20700.3, "1"], [1, "Buy", "1e3", "1"]])
def test_perpetual_rejects_floats_and_exponents(bad_row: list[object]) -> None:
    rows, bad = fills(instrument("BTCUSDT"), [bad_row, [2, "Buy", "1.5", "2"]])
    assert (bad, len(rows)) == (1, 1)


def test_a_value_beyond_decimal_28_10_is_rejected_not_rounded() -> None:
    _, bad = fills(instrument("BTCUSDT"), [[1, "Buy", "1" + "0" * 18, "1"]])
    assert bad == 1
    _, bad = fills(instrument("BTCUSDT"), [[1, "Buy", "12345678901.00000000001", "1"]])
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
