"""``tradelake report``: one offline HTML file whose numbers are the lake's, drawn by a browser.

The lake is real (Parquet written by the ParquetSink, the gap ledger, rollups written by
``tradelake rollup`` for some hours only), with a file delivered twice and declared gaps. The
report's data is checked against an independent computation from the trades themselves, and
the page is opened in headless Chromium: no script error, every chart drawn, tooltips that
answer the mouse, and a screenshot with the buy and sell colours in it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from PIL import Image

from tradelake.adapters.duckdb_lake import connect
from tradelake.adapters.duckdb_rollup import rollup_lake
from tradelake.adapters.lake_files import JsonlGapLedger
from tradelake.adapters.parquet_sink import ParquetSink
from tradelake.cli import main
from tradelake.model import EARLIEST_NS, FIXED_ONE, INCREMENTAL, Gap, Trade, trade_key
from tradelake.partitions import NS_PER_HOUR
from tradelake.report.data import PRICE_POINTS, Bar, load, merge
from tradelake.simulator import synthetic_tape

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 27, tzinfo=UTC)
START_NS = int(START.timestamp()) * 10**9
HOURS = 3
SYMBOLS = ("BTCUSD", "BTCUSDT", "sBTCUSDT")
NS_PER_MS = 1_000_000
NS_PER_MINUTE = 60 * 10**9
BUY_RGB = (0x16, 0xA3, 0x4A)
SELL_RGB = (0xDC, 0x26, 0x26)
"""The default palette of report.css (--buy, --sell)."""


def gaps_of(symbol: str, first_ns: int) -> list[Gap]:
    """The lake's start, half an hour lost to a short snapshot, and one dropped nanosecond."""
    minute = NS_PER_MINUTE
    return [
        Gap(symbol, EARLIEST_NS, first_ns, first_ns, "no_cursor"),
        Gap(symbol, START_NS + 40 * minute, START_NS + 70 * minute, 0, "snapshot_short"),
        Gap(symbol, START_NS + 150 * minute, START_NS + 150 * minute, 0, "out_of_order"),
    ]


class Lake(NamedTuple):
    path: Path
    trades: dict[str, list[Trade]]
    """What a reader must see: every trade once."""
    gaps: list[Gap]


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    path = tmp_path_factory.mktemp("lake")
    tape = synthetic_tape(SYMBOLS, START_NS, HOURS * NS_PER_HOUR, seed=11, rate=0.5)
    sink = ParquetSink(path)
    trades: dict[str, list[Trade]] = {}
    gaps: list[Gap] = []
    for symbol, fills in tape.items():
        symbol_gaps = gaps_of(symbol, fills[0].ts_ns)
        gaps += symbol_gaps
        seen: Counter[tuple[int, str, int, int]] = Counter()
        kept = trades.setdefault(symbol, [])
        for seq, fill in enumerate(fills):
            k = seen[fill]
            seen[fill] += 1
            if not any(g.from_ts_ns < fill.ts_ns < g.to_ts_ns for g in symbol_gaps):
                kept.append(Trade(symbol, *fill, k, fill.ts_ns + NS_PER_MS, seq, INCREMENTAL))
        sink.add(kept)
    sink.flush()
    # a file delivered twice (a crash between publish and cursor save): stored, read once
    sink.add([t for t in trades["BTCUSD"] if t.ts_ns < START_NS + NS_PER_HOUR])
    sink.flush()
    JsonlGapLedger(path).record(gaps)
    rollup_lake(path, end=START + timedelta(hours=2))  # the last hour is left to the report
    return Lake(path, trades, gaps)


@pytest.fixture(scope="module")
def report(lake: Lake, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "lake.html"
    assert main(["report", "--lake", str(lake.path), "--out", str(out)]) == 0
    return out


def page_data(report: Path) -> dict[str, Any]:
    found = re.search(
        r'<script type="application/json" id="report-data">(.*?)</script>', report.read_text()
    )
    assert found
    data: dict[str, Any] = json.loads(found.group(1))
    return data


def test_the_report_is_one_file_that_loads_nothing(report: Path) -> None:
    html = report.read_text()
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", html, re.IGNORECASE)
    assert not re.search(r"\ssrc\s*=|<link\b|@import|\bfetch\s*\(|XMLHttpRequest|<iframe", html)
    assert set(re.findall(r'href="(.)', html)) <= {"#"}, "links only within the page"
    assert "default-src 'none'" in html, "and the page forbids itself any load"
    assert report.stat().st_size < 1_500_000


def test_the_report_holds_the_lakes_numbers(report: Path, lake: Lake) -> None:
    data = page_data(report)
    assert [s["symbol"] for s in data["symbols"]] == sorted(SYMBOLS)
    for sym in data["symbols"]:
        trades = lake.trades[sym["symbol"]]
        stats = sym["stats"]
        assert stats["trades"] == len(trades)
        twice = [t for t in trades if t.ts_ns < START_NS + NS_PER_HOUR]
        assert stats["stored"] == len(trades) + (len(twice) if sym["symbol"] == "BTCUSD" else 0)
        assert stats["first"] == f"{utc(trades[0].ts_ns):%Y-%m-%d %H:%M:%S.%f}"[:-3] + " UTC"
        assert sum(h["trades"] for h in sym["hours"]) == len(trades)
        assert [g["reason"] for g in sym["gaps"]] == ["no_cursor", "snapshot_short", "out_of_order"]
        assert sym["gaps"][0]["from_utc"] == "2000-01-01 00:00:00.000000000 UTC"
        assert sym["gaps"][1]["to_utc"] == "2026-11-27 01:10:00.000000000 UTC"
        assert sym["hours"][0]["gaps"] == 2, "no_cursor ends in the first hour, snapshot_short"

        candles = sym["candles"]
        assert candles["bar"] == 60_000
        assert candles["source"] == "2 of 3 hours from the ohlcv_1m rollup"
        expected = minute_bars(trades)
        assert candles["t"] == [round(b.start.timestamp() * 1000) for b in expected]
        assert candles["o"] == [float(b.open) for b in expected]
        assert candles["h"] == [float(b.high) for b in expected]
        assert candles["l"] == [float(b.low) for b in expected]
        assert candles["c"] == [float(b.close) for b in expected]
        assert candles["bv"] == [float(b.buy_volume) for b in expected]
        assert candles["sv"] == [float(b.sell_volume) for b in expected]
        assert candles["n"] == [b.trade_count for b in expected]

        for side in ("buy", "sell"):
            top = [c for c in sym["top"] if c["side"] == side]
            counts = Counter(fixed(t.price) for t in trades if t.side == side)
            assert len(top) == 50
            assert sorted(c["trades"] for c in top) == sorted(counts.values())[-50:]
            assert all(counts[Decimal(c["price"])] == c["trades"] for c in top)


def test_price_over_time_is_thinned_keeping_each_slices_extremes(report: Path, lake: Lake) -> None:
    for sym in page_data(report)["symbols"]:
        price = sym["price"]
        trades = lake.trades[sym["symbol"]]
        assert len(trades) > PRICE_POINTS, "the fixture must be big enough to be thinned"
        assert price["buckets"] == PRICE_POINTS // 4
        assert len(price["t"]) <= PRICE_POINTS
        assert price["t"] == sorted(price["t"])
        drawn = set(zip(price["t"], price["s"], price["p"], strict=True))
        span = sym["end"] - sym["start"]
        slices: dict[tuple[str, int], list[float]] = {}
        for t in trades:
            ms = t.ts_ns // NS_PER_MS
            slices.setdefault((t.side, (ms - sym["start"]) * price["buckets"] // span), []).append(
                float(fixed(t.price))
            )
        drawn_prices: dict[tuple[str, int], set[float]] = {}
        for ms, side, p in drawn:
            key = ("buy" if side == "b" else "sell", (ms - sym["start"]) * price["buckets"] // span)
            drawn_prices.setdefault(key, set()).add(p)
        assert drawn_prices.keys() == slices.keys()
        for key, prices in slices.items():
            assert {min(prices), max(prices)} == drawn_prices[key], key


def test_candles_are_the_same_from_the_rollups_or_rolled_up_on_the_spot(
    lake: Lake, tmp_path: Path
) -> None:
    bare = tmp_path / "lake"
    shutil.copytree(lake.path, bare, ignore=shutil.ignore_patterns("rollups"))
    rolled = tmp_path / "rolled"
    shutil.copytree(lake.path, rolled)
    rollup_lake(rolled)
    with_rollups = load(connect(rolled), rolled)["symbols"]
    without = load(connect(bare), bare)["symbols"]
    for a, b in zip(with_rollups, without, strict=True):
        assert a["candles"]["source"] == "from the ohlcv_1m rollup"
        assert b["candles"]["source"].startswith("ohlcv_1m rolled up for this report")
        assert {**a["candles"], "source": ""} == {**b["candles"], "source": ""}


def test_bars_merge_into_wider_bars_exactly(lake: Lake) -> None:
    trades = lake.trades["sBTCUSDT"]
    five = timedelta(minutes=5)
    assert merge(minute_bars(trades), five) == minute_bars(trades, five)


def test_report_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--lake", str(tmp_path / "nowhere")]) == 1
    assert capsys.readouterr().err.count("\n") == 1
    (tmp_path / "empty").mkdir()
    assert main(["report", "--lake", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "holds no trades" in err
    assert not (tmp_path / "empty" / "report.html").exists()


HOVER = """
<script>
(() => {
  const tip = document.getElementById("tip");
  const log = [];
  const fire = (el, type, fx, fy) => {
    const box = el.getBoundingClientRect();
    el.dispatchEvent(new MouseEvent(type, {
      bubbles: true, clientX: box.left + box.width * fx, clientY: box.top + box.height * fy,
    }));
  };
  for (const target of document.querySelectorAll("svg.chart .hit, rect.cell")) {
    for (const [fx, fy] of [[0.02, 0.5], [0.5, 0.5], [0.97, 0.95]]) {
      fire(target, "mousemove", fx, fy);
      log.push(tip.hidden ? "(no tooltip)" : tip.textContent);
    }
    fire(target, "mouseleave", 0.5, 0.5);
  }
  const out = document.createElement("pre");
  out.id = "hover-log";
  out.textContent = log.join("\\n");
  document.body.append(out);
})();
</script>
"""


def test_the_report_draws_in_chromium_without_errors(report: Path, tmp_path: Path) -> None:
    browser = chromium()
    dom = browse(browser, tmp_path, report, "--dump-dom")
    assert element_text(dom, "report-errors") == ""
    assert 'data-state="ready"' in dom
    charts = 4 * len(SYMBOLS)
    assert f'data-charts="{charts}"' in dom
    assert len(re.findall(r'<svg class="chart" width="\d+"', dom)) == charts

    hovered = tmp_path / "hovered.html"
    hovered.write_text(report.read_text().replace("</body>", f"{HOVER}</body>"))
    dom = browse(browser, tmp_path, hovered, "--dump-dom")
    assert element_text(dom, "report-errors") == ""
    log = element_text(dom, "hover-log")
    for says in ("quantity", "open", "vwap", "declared gaps", "rank", "#1 of the buy side"):
        assert says in log, f"no tooltip says {says!r}"

    shot = tmp_path / "report.png"
    browse(browser, tmp_path, report, f"--screenshot={shot}", "--window-size=1400,2400")
    with Image.open(shot) as image:
        assert image.size == (1400, 2400)
        counted = image.convert("RGB").getcolors(maxcolors=1 << 24) or []
    colours = [(n, rgb) for n, rgb in counted if isinstance(rgb, tuple)]
    assert len(colours) > 1000, "a blank or flat page"
    assert max(n for n, _ in colours) < 0.9 * 1400 * 2400
    assert pixels_near(colours, BUY_RGB) > 1000, "buy green is drawn"
    assert pixels_near(colours, SELL_RGB) > 1000, "sell red is drawn"


def chromium() -> str:
    """Debian's chromium; ``make test`` installs it when run as root (``make system-deps``)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    how = "`sudo make system-deps` (apt-get install --no-install-recommends chromium)"
    if os.geteuid() == 0:
        pytest.fail(f"chromium is missing though this runs as root: run {how}")
    pytest.skip(f"NOT TESTED: the report in a browser, because chromium is missing: run {how}")


def browse(browser: str, profile: Path, page: Path, *args: str) -> str:
    """Run headless Chromium on ``page`` with the network unreachable; its stdout."""
    done = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",  # as root (CI) Chromium refuses to start with its sandbox
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--proxy-server=127.0.0.1:9",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            f"--user-data-dir={profile / 'chromium'}",
            "--virtual-time-budget=5000",
            *args,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def element_text(dom: str, element_id: str) -> str:
    found = re.search(rf'<(\w+) id="{element_id}"[^>]*>(.*?)</\1>', dom, re.DOTALL)
    assert found, f"no #{element_id} in the page"
    return found.group(2)


def pixels_near(colours: Sequence[tuple[int, tuple[int, ...]]], rgb: tuple[int, ...]) -> int:
    return sum(n for n, c in colours if all(abs(a - b) <= 8 for a, b in zip(c, rgb, strict=True)))


def utc(ts_ns: int) -> datetime:
    seconds, ns = divmod(ts_ns, 10**9)
    return datetime.fromtimestamp(seconds, UTC) + timedelta(microseconds=ns // 1000)


def fixed(value: int) -> Decimal:
    return Decimal(value) / FIXED_ONE


def minute_bars(trades: Sequence[Trade], size: timedelta = timedelta(minutes=1)) -> list[Bar]:
    """OHLCV bars of ``size`` computed from the trades in Python, exactly: the oracle."""
    width = int(size.total_seconds()) * 10**9
    bars: dict[int, list[Trade]] = {}
    for t in sorted(trades, key=lambda t: (t.ts_ns, trade_key(t))):
        bars.setdefault(t.ts_ns // width * width, []).append(t)
    return [bar(start, rows) for start, rows in sorted(bars.items())]


def bar(start_ns: int, rows: list[Trade]) -> Bar:
    prices = [fixed(t.price) for t in rows]
    return Bar(
        utc(start_ns),
        prices[0],
        max(prices),
        min(prices),
        prices[-1],
        sum((fixed(t.qty) for t in rows), Decimal(0)),
        sum((fixed(t.price) * fixed(t.qty) for t in rows), Decimal(0)),
        len(rows),
        sum((fixed(t.qty) for t in rows if t.side == "buy"), Decimal(0)),
        sum((fixed(t.qty) for t in rows if t.side == "sell"), Decimal(0)),
    )
