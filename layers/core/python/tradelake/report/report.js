// The report's charts: hand-written SVG from the JSON data block, redrawn on resize.
// No library and no network: `tradelake report` inlines this file into one HTML page.
(() => {
  "use strict";

  const data = JSON.parse(document.getElementById("report-data").textContent);
  const SECOND = 1e3;
  const MINUTE = 60 * SECOND;
  const HOUR = 60 * MINUTE;
  const DAY = 24 * HOUR;
  const MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(" ");
  const TIME_STEPS = [
    SECOND, 2 * SECOND, 5 * SECOND, 10 * SECOND, 15 * SECOND, 30 * SECOND,
    MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE,
    HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR,
    DAY, 2 * DAY, 7 * DAY, 14 * DAY, 30 * DAY, 91 * DAY, 365 * DAY,
  ];
  const MARGIN = { left: 76, right: 20 };
  const compact = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 2 });
  const whole = new Intl.NumberFormat("en-US");
  const exact = new Intl.NumberFormat("en-US", { maximumFractionDigits: 10 });
  const tenDigits = new Intl.NumberFormat("en-US", { maximumSignificantDigits: 10 });

  // ---------------------------------------------------------------- formatting

  const pad = (n, width = 2) => String(n).padStart(width, "0");
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  const px = (v) => v.toFixed(1);

  function utc(ms, precision = "s") {
    const d = new Date(ms);
    let text = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} `
      + `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
    if (precision !== "min") text += `:${pad(d.getUTCSeconds())}`;
    if (precision === "ms") text += `.${pad(d.getUTCMilliseconds(), 3)}`;
    return `${text} UTC`;
  }

  function duration(ms) {
    if (ms < SECOND) return `${Math.round(ms)} ms`;
    if (ms < MINUTE) return `${(ms / SECOND).toFixed(1)} s`;
    const minutes = Math.floor(ms / MINUTE);
    if (minutes < 60) return `${minutes} min ${Math.round((ms % MINUTE) / SECOND)} s`;
    const hours = Math.floor(minutes / 60);
    if (hours < 48) return `${hours} h ${minutes % 60} min`;
    const days = Math.floor(hours / 24);
    if (days < 730) return `${whole.format(days)} d ${hours % 24} h`;
    return `${(days / 365.25).toFixed(1)} years`;
  }

  function barName(ms) {
    for (const [unit, name] of [[DAY, "day"], [HOUR, "hour"], [MINUTE, "minute"]]) {
      if (ms % unit === 0) return `${ms / unit}-${name}`;
    }
    return duration(ms);
  }

  function decimals(step) {
    let d = 0;
    while (d < 10 && Math.abs(Math.round(step * 10 ** d) - step * 10 ** d) > 1e-9 * 10 ** d) d += 1;
    return d;
  }

  const fixed = (v, step) => v.toLocaleString("en-US", {
    minimumFractionDigits: decimals(step), maximumFractionDigits: decimals(step),
  });

  // ---------------------------------------------------------------- scales and axes

  function linear(d0, d1, r0, r1) {
    const k = (r1 - r0) / (d1 - d0 || 1);
    return (v) => r0 + (v - d0) * k;
  }

  function timeScale(sym, width) {
    const a = MARGIN.left;
    const b = width - MARGIN.right;
    const span = sym.end - sym.start;
    const x = (t) => a + ((t - sym.start) / span) * (b - a);
    x.invert = (v) => sym.start + ((v - a) / (b - a)) * span;
    x.a = a;
    x.b = b;
    return x;
  }

  function padded(lo, hi, share) {
    if (!(hi > lo)) return [lo - Math.abs(lo) * 0.01 - 1e-9, hi + Math.abs(hi) * 0.01 + 1e-9];
    const margin = (hi - lo) * share;
    return [lo - margin, hi + margin];
  }

  function niceTicks(lo, hi, count) {
    const raw = (hi - lo) / Math.max(1, count);
    const magnitude = 10 ** Math.floor(Math.log10(raw));
    const f = raw / magnitude;
    const step = (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * magnitude;
    const values = [];
    for (let i = Math.ceil(lo / step); i * step <= hi + step * 1e-9; i += 1) values.push(i * step);
    return { step, values };
  }

  function timeTicks(t0, t1, count) {
    const step = TIME_STEPS.find((s) => (t1 - t0) / s <= count) || TIME_STEPS.at(-1);
    const values = [];
    for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) values.push(t);
    return { step, values };
  }

  function timeLabel(t, step, previous) {
    const d = new Date(t);
    const day = `${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]}`;
    if (step >= DAY) {
      const newYear = previous === null
        || new Date(previous).getUTCFullYear() !== d.getUTCFullYear();
      return [day, newYear ? String(d.getUTCFullYear()) : ""];
    }
    const seconds = step < MINUTE ? `:${pad(d.getUTCSeconds())}` : "";
    const newDay = previous === null || Math.floor(previous / DAY) !== Math.floor(t / DAY);
    return [`${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}${seconds}`,
      newDay ? `${day} ${d.getUTCFullYear()}` : ""];
  }

  function timeAxis(x, top, bottom) {
    const { step, values } = timeTicks(x.invert(x.a), x.invert(x.b),
      Math.max(2, Math.floor((x.b - x.a) / 96)));
    let svg = "";
    let previous = null;
    for (const t of values) {
      const at = px(x(t));
      const [label, sub] = timeLabel(t, step, previous);
      previous = t;
      svg += `<line class="grid" x1="${at}" x2="${at}" y1="${top}" y2="${bottom}"/>`
        + `<line class="tickmark" x1="${at}" x2="${at}" y1="${bottom}" y2="${bottom + 4}"/>`
        + `<text class="tick" x="${at}" y="${bottom + 17}" text-anchor="middle">${label}</text>`;
      if (sub) {
        svg += `<text class="tick sub" x="${at}" y="${bottom + 31}" text-anchor="middle">${sub}</text>`;
      }
    }
    return `${svg}<line class="axis" x1="${x.a}" x2="${x.b}" y1="${bottom}" y2="${bottom}"/>`;
  }

  function valueAxis(y, lo, hi, x0, x1, count, format) {
    const { step, values } = niceTicks(lo, hi, count);
    let svg = "";
    for (const v of values) {
      const at = px(y(v));
      svg += `<line class="grid" x1="${x0}" x2="${x1}" y1="${at}" y2="${at}"/>`
        + `<text class="tick" x="${x0 - 8}" y="${at}" dy="0.32em" text-anchor="end">`
        + `${format(v, step)}</text>`;
    }
    return svg;
  }

  function gapBands(sym, x, top, bottom) {
    let svg = "";
    for (const g of sym.gaps) {
      const a = Math.max(x.a, x(g.from));
      const b = Math.min(x.b, x(g.to));
      if (b < x.a || a > x.b) continue;
      svg += `<rect class="gapband" x="${px(a)}" y="${top}" width="${px(Math.max(1.5, b - a))}" `
        + `height="${bottom - top}"/>`;
    }
    return svg;
  }

  /** The union of the gap intervals, as sorted disjoint [from, to] pairs. */
  function merged(gaps) {
    const out = [];
    for (const g of [...gaps].sort((a, b) => a.from - b.from)) {
      const last = out.at(-1);
      if (last && g.from <= last[1]) last[1] = Math.max(last[1], g.to);
      else out.push([g.from, g.to]);
    }
    return out;
  }

  const svgOpen = (width, height, label) => `<svg class="chart" width="${width}" height="${height}" `
    + `viewBox="0 0 ${width} ${height}" role="img" aria-label="${esc(label)}">`;

  /** Index of the last element of the sorted array `values` that is <= v (-1 if none). */
  function floorIndex(values, v) {
    let lo = 0;
    let hi = values.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (values[mid] <= v) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return found;
  }

  // ---------------------------------------------------------------- tooltip and crosshair

  const tip = document.getElementById("tip");

  function showTip(event, html) {
    tip.innerHTML = html;
    tip.hidden = false;
    const box = tip.getBoundingClientRect();
    let left = event.clientX + 16;
    let top = event.clientY + 14;
    if (left + box.width > window.innerWidth - 8) left = event.clientX - box.width - 16;
    if (top + box.height > window.innerHeight - 8) top = event.clientY - box.height - 14;
    tip.style.left = `${Math.max(8, left)}px`;
    tip.style.top = `${Math.max(8, top)}px`;
  }

  function hideTip() {
    tip.hidden = true;
  }

  const row = (name, value, cls = "") => `<div class="row ${cls}"><span>${name}</span>`
    + `<b>${value}</b></div>`;
  const sideTag = (side) => `<span class="tag ${side}">${side}</span>`;

  /** A vertical line at the same time in every time chart of a section. */
  function crosshair(section, xPixel) {
    for (const line of section.querySelectorAll("line.xhair")) {
      if (xPixel === null) {
        line.setAttribute("visibility", "hidden");
      } else {
        line.setAttribute("x1", px(xPixel));
        line.setAttribute("x2", px(xPixel));
        line.setAttribute("visibility", "visible");
      }
    }
  }

  function hover(el, section, move) {
    const hit = el.querySelector(".hit");
    hit.addEventListener("mousemove", (event) => {
      const box = hit.ownerSVGElement.getBoundingClientRect();
      const html = move(event.clientX - box.left, event.clientY - box.top);
      if (html) showTip(event, html);
      else hideTip();
    });
    hit.addEventListener("mouseleave", () => {
      hideTip();
      crosshair(section, null);
      for (const mark of section.querySelectorAll(".marker")) mark.setAttribute("visibility", "hidden");
    });
  }

  const xhair = (top, bottom) => `<line class="xhair" x1="0" x2="0" y1="${top}" y2="${bottom}" `
    + `visibility="hidden"/>`;

  // ---------------------------------------------------------------- price over time

  function priceChart(el, section, sym, width) {
    const height = 300;
    const top = 12;
    const bottom = height - 40;
    const x = timeScale(sym, width);
    const { t, p, q, s } = sym.price;
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of p) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    [lo, hi] = padded(lo, hi, 0.06);
    const y = linear(lo, hi, bottom, top);
    // dots in time order, a path per run of one side, so that neither side hides the other
    let dots = "";
    let run = "";
    let line = "";
    let gap = 0;
    const gaps = merged(sym.gaps);
    for (let i = 0; i < t.length; i += 1) {
      const xi = px(x(t[i]));
      const yi = px(y(p[i]));
      run += `M${xi} ${yi}h0`;
      if (s[i] !== s[i + 1]) {
        dots += `<path class="dots ${s[i] === "b" ? "buy" : "sell"}" d="${run}"/>`;
        run = "";
      }
      // the trace breaks where a declared gap lies between two trades: no line across the unknown
      while (i > 0 && gap < gaps.length && gaps[gap][1] <= t[i - 1]) gap += 1;
      const broken = i === 0 || (gap < gaps.length && gaps[gap][0] < t[i]);
      line += `${broken ? "M" : "L"}${xi} ${yi}`;
    }
    el.innerHTML = svgOpen(width, height, `price of ${sym.symbol} over time by side`)
      + gapBands(sym, x, top, bottom)
      + valueAxis(y, lo, hi, x.a, x.b, 6, fixed)
      + timeAxis(x, top, bottom)
      + `<path class="trace" d="${line}"/>`
      + dots
      + xhair(top, bottom)
      + `<circle class="marker" r="5.5" visibility="hidden"/>`
      + `<rect class="hit" x="${x.a}" y="${top}" width="${x.b - x.a}" height="${bottom - top}"/></svg>`;
    const marker = el.querySelector(".marker");
    hover(el, section, (mx, my) => {
      const at = x.invert(mx);
      const i0 = floorIndex(t, at);
      let best = -1;
      let bestD = Infinity;
      for (const dir of [-1, 1]) {
        for (let i = dir < 0 ? i0 : i0 + 1; i >= 0 && i < t.length; i += dir) {
          const dx = x(t[i]) - mx;
          if (Math.abs(dx) > 30) break;
          const d = dx * dx + (y(p[i]) - my) ** 2;
          if (d < bestD) {
            bestD = d;
            best = i;
          }
        }
      }
      crosshair(section, mx);
      if (best < 0) {
        marker.setAttribute("visibility", "hidden");
        return `<div class="title">${utc(at, "s")}</div><div class="muted">no trade nearby</div>`;
      }
      const side = s[best] === "b" ? "buy" : "sell";
      marker.setAttribute("cx", px(x(t[best])));
      marker.setAttribute("cy", px(y(p[best])));
      marker.setAttribute("class", `marker ${side}`);
      marker.setAttribute("visibility", "visible");
      return `<div class="title">${utc(t[best], "ms")}</div>`
        + row("side", sideTag(side)) + row("price", exact.format(p[best]))
        + row("quantity", exact.format(q[best]));
    });
  }

  // ---------------------------------------------------------------- candles with volume

  function candleChart(el, section, sym, width) {
    const c = sym.candles;
    const height = 420;
    const top = 12;
    const priceBottom = 262;
    const volumeTop = 292;
    const bottom = height - 40;
    const x = timeScale(sym, width);
    let lo = Infinity;
    let hi = -Infinity;
    let vmax = 0;
    for (let i = 0; i < c.t.length; i += 1) {
      lo = Math.min(lo, c.l[i]);
      hi = Math.max(hi, c.h[i]);
      vmax = Math.max(vmax, c.bv[i] + c.sv[i]);
    }
    [lo, hi] = padded(lo, hi, 0.05);
    const y = linear(lo, hi, priceBottom, top);
    const yv = linear(0, vmax || 1, bottom, volumeTop);
    const slot = x(sym.start + c.bar) - x(sym.start);
    const body = Math.max(1, Math.min(slot * 0.72, 16));
    const paths = { up: "", down: "", wickUp: "", wickDown: "", buy: "", sell: "" };
    let vwap = "";
    for (let i = 0; i < c.t.length; i += 1) {
      const mid = x(c.t[i]) + slot / 2;
      const left = px(mid - body / 2);
      const up = c.c[i] >= c.o[i];
      const y0 = y(Math.max(c.o[i], c.c[i]));
      const y1 = y(Math.min(c.o[i], c.c[i]));
      paths[up ? "wickUp" : "wickDown"] += `M${px(mid)} ${px(y(c.h[i]))}V${px(y(c.l[i]))}`;
      paths[up ? "up" : "down"] += `M${left} ${px(y0)}h${px(body)}v${px(Math.max(1, y1 - y0))}`
        + `h${px(-body)}Z`;
      const yb = yv(c.bv[i]);
      paths.buy += `M${left} ${bottom}h${px(body)}V${px(yb)}h${px(-body)}Z`;
      paths.sell += `M${left} ${px(yb)}h${px(body)}V${px(yv(c.bv[i] + c.sv[i]))}h${px(-body)}Z`;
      const joined = i > 0 && c.t[i] - c.t[i - 1] === c.bar;
      vwap += `${joined ? "L" : "M"}${px(mid)} ${px(y(c.vwap[i]))}`;
    }
    el.innerHTML = svgOpen(width, height, `OHLCV candles of ${sym.symbol} with buy and sell volume`)
      + gapBands(sym, x, top, bottom)
      + valueAxis(y, lo, hi, x.a, x.b, 6, fixed)
      + valueAxis(yv, 0, vmax || 1, x.a, x.b, 2, (v) => compact.format(v))
      + timeAxis(x, top, bottom)
      + `<line class="axis" x1="${x.a}" x2="${x.b}" y1="${priceBottom + 8}" y2="${priceBottom + 8}"/>`
      + `<text class="panel-label" x="${x.a + 6}" y="${volumeTop - 6}">volume: `
      + `<tspan class="buy-text">buy</tspan> + <tspan class="sell-text">sell</tspan></text>`
      + `<path class="wick up" d="${paths.wickUp}"/><path class="wick down" d="${paths.wickDown}"/>`
      + `<path class="body up" d="${paths.up}"/><path class="body down" d="${paths.down}"/>`
      + `<path class="vwap" d="${vwap}"/>`
      + `<path class="vol buy" d="${paths.buy}"/><path class="vol sell" d="${paths.sell}"/>`
      + `<rect class="marker band" y="${top}" height="${bottom - top}" visibility="hidden"/>`
      + xhair(top, bottom)
      + `<rect class="hit" x="${x.a}" y="${top}" width="${x.b - x.a}" height="${bottom - top}"/></svg>`;
    const band = el.querySelector(".band");
    hover(el, section, (mx) => {
      crosshair(section, mx);
      const at = x.invert(mx);
      const i = floorIndex(c.t, at);
      if (i < 0 || at >= c.t[i] + c.bar) {
        band.setAttribute("visibility", "hidden");
        return `<div class="title">${utc(at, "s")}</div><div class="muted">no trades in this bar</div>`;
      }
      band.setAttribute("x", px(x(c.t[i])));
      band.setAttribute("width", px(Math.max(1, slot)));
      band.setAttribute("visibility", "visible");
      const change = c.o[i] ? ((c.c[i] - c.o[i]) / c.o[i]) * 100 : 0;
      return `<div class="title">${utc(c.t[i], "min")} · ${barName(c.bar)} bar</div>`
        + row("open", exact.format(c.o[i])) + row("high", exact.format(c.h[i]))
        + row("low", exact.format(c.l[i]))
        + row("close", `${exact.format(c.c[i])} <small class="${change >= 0 ? "buy-text" : "sell-text"}">`
          + `${change >= 0 ? "+" : ""}${change.toFixed(3)}%</small>`)
        + row("vwap", tenDigits.format(c.vwap[i]))
        + row("volume", exact.format(c.v[i]))
        + row(sideTag("buy"), exact.format(c.bv[i])) + row(sideTag("sell"), exact.format(c.sv[i]))
        + row("trades", whole.format(c.n[i]));
    });
  }

  // ---------------------------------------------------------------- top-50 prices heat map

  function heatMap(el, section, sym, width) {
    const cells = sym.top;
    const prices = [...new Map(cells.map((c) => [c.price, c.p])).entries()]
      .sort((a, b) => a[1] - b[1]).map(([text]) => text);
    const column = new Map(prices.map((text, i) => [text, i]));
    const rank = new Map();
    for (const side of ["buy", "sell"]) {
      cells.filter((c) => c.side === side).sort((a, b) => b.trades - a.trades)
        .forEach((c, i) => rank.set(c, i + 1));
    }
    const most = Math.max(...cells.map((c) => c.trades));
    const left = MARGIN.left;
    const cellW = (width - left - MARGIN.right) / prices.length;
    const cellH = 40;
    const top = 8;
    const rowsBottom = top + 2 * cellH;
    const every = Math.ceil(14 / cellW);
    const longest = Math.max(...prices.map((p, i) => (i % every ? 0 : p.length)));
    const labelsBottom = rowsBottom + 12 + longest * 6.4;
    const height = Math.round(labelsBottom + 16);
    let svg = svgOpen(width, height, `heat map of the top-50 prices by side of ${sym.symbol}`);
    ["buy", "sell"].forEach((side, r) => {
      const y0 = top + r * cellH;
      svg += `<rect class="cell-empty" x="${left}" y="${y0 + 1}" width="${px(width - left - MARGIN.right)}" `
        + `height="${cellH - 2}"/>`
        + `<text class="tick side-label ${side}-text" x="${left - 10}" y="${y0 + cellH / 2}" dy="0.32em" `
        + `text-anchor="end">${side}</text>`;
    });
    cells.forEach((c, i) => {
      const r = c.side === "buy" ? 0 : 1;
      const share = Math.sqrt(c.trades / most);
      svg += `<rect class="cell ${c.side}" data-i="${i}" x="${px(left + column.get(c.price) * cellW + 0.5)}" `
        + `y="${top + r * cellH + 1}" width="${px(Math.max(1, cellW - 1))}" height="${cellH - 2}" `
        + `fill-opacity="${(0.1 + 0.9 * share).toFixed(3)}"/>`;
      if (cellW >= 26) {
        svg += `<text class="cell-count${share > 0.55 ? " on-dark" : ""}" `
          + `x="${px(left + (column.get(c.price) + 0.5) * cellW)}" y="${top + r * cellH + cellH / 2}" `
          + `dy="0.32em" text-anchor="middle">${compact.format(c.trades)}</text>`;
      }
    });
    prices.forEach((text, i) => {
      if (i % every) return;
      const cx = px(left + (i + 0.5) * cellW);
      svg += `<text class="tick" transform="translate(${cx} ${rowsBottom + 8}) rotate(-90)" `
        + `dy="0.32em" text-anchor="end">${esc(text)}</text>`;
    });
    svg += `<text class="panel-label" x="${left - 10}" y="${rowsBottom + 16}" text-anchor="end">price</text>`
      + `<rect class="marker outline" visibility="hidden"/></svg>`;
    el.innerHTML = svg;
    const outline = el.querySelector(".outline");
    for (const rect of el.querySelectorAll("rect.cell")) {
      rect.addEventListener("mousemove", (event) => {
        const c = cells[Number(rect.dataset.i)];
        for (const name of ["x", "y", "width", "height"]) outline.setAttribute(name, rect.getAttribute(name));
        outline.setAttribute("visibility", "visible");
        showTip(event, `<div class="title">${esc(c.price)}</div>`
          + row("side", sideTag(c.side)) + row("trades", whole.format(c.trades))
          + row("rank", `#${rank.get(c)} of the ${c.side} side`)
          + row("volume", esc(c.volume)));
      });
      rect.addEventListener("mouseleave", () => {
        outline.setAttribute("visibility", "hidden");
        hideTip();
      });
    }
  }

  // ---------------------------------------------------------------- completeness

  /** Where each gap's bar and label go: lanes so that no two overlap, the label inside the bar
   * when it fits, else just after it when there is room, else none (the tooltip has it). */
  function gapLayout(gaps, x) {
    const ends = [];
    return gaps.map((g) => {
      const a = Math.max(x.a, x(g.from));
      const b = Math.max(a + 2, Math.min(x.b, x(g.to)));
      const label = `${x(g.from) < x.a ? "◀ " : ""}${g.reason}`;
      const textWidth = label.length * 6.6 + 12;
      const inside = b - a >= textWidth;
      const after = !inside && b + textWidth <= x.b;
      let lane = ends.findIndex((end) => end + 4 < a);
      if (lane < 0) lane = ends.push(0) - 1;
      ends[lane] = after ? b + textWidth : b;
      return { a, b, lane, label: inside || after ? label : "", inside };
    });
  }

  function completenessChart(el, section, sym, width) {
    const x = timeScale(sym, width);
    const gaps = sym.gaps.filter((g) => g.to >= sym.start && g.from <= sym.end)
      .sort((g, h) => g.from - h.from);
    const layout = gapLayout(gaps, x);
    const laneCount = Math.max(1, ...layout.map((l) => l.lane + 1));
    const top = 18;
    const barsBottom = 104;
    const lanesTop = barsBottom + 22;
    const laneH = 24;
    const bottom = lanesTop + laneCount * laneH + 6;
    const height = bottom + 40;
    const hours = sym.hours;
    const most = Math.max(1, ...hours.map((h) => h.trades));
    const yh = linear(0, most, barsBottom, top);
    let svg = svgOpen(width, height, `trades per hour and declared gaps of ${sym.symbol}`)
      + timeAxis(x, top, bottom)
      + `<text class="panel-label" x="${x.a - 8}" y="${top + 4}" text-anchor="end">trades</text>`
      + `<text class="panel-label" x="${x.a - 8}" y="${lanesTop + laneH / 2}" dy="0.32em" `
      + `text-anchor="end">gaps</text>`
      + `<line class="axis" x1="${x.a}" x2="${x.b}" y1="${barsBottom}" y2="${barsBottom}"/>`;
    for (const h of hours) {
      const a = x(h.t) + 1.5;
      const w = Math.max(1, x(h.t + HOUR) - x(h.t) - 3);
      const yTop = yh(h.trades);
      const box = `x="${px(a)}" y="${px(yTop)}" width="${px(w)}" height="${px(barsBottom - yTop)}"`;
      svg += `<rect class="hourbar${h.gaps ? " touched" : ""}" ${box}/>`;
      if (h.gaps) svg += `<rect class="gapband" ${box}/>`;
      if (w >= 36) {
        svg += `<text class="bar-label" x="${px(a + w / 2)}" y="${px(yTop - 4)}" `
          + `text-anchor="middle">${whole.format(h.trades)}</text>`;
      }
    }
    gaps.forEach((g, i) => {
      const { a, b, lane, label, inside } = layout[i];
      const y0 = lanesTop + lane * laneH;
      svg += `<rect class="gapbar r-${esc(g.reason)}" x="${px(a)}" y="${y0 + 3}" `
        + `width="${px(b - a)}" height="${laneH - 6}" rx="3"/>`;
      if (label) {
        svg += `<text class="gap-label${inside ? "" : " after"}" x="${px(inside ? a + 6 : b + 6)}" `
          + `y="${y0 + laneH / 2}" dy="0.32em">${esc(label)}</text>`;
      }
    });
    svg += xhair(top, bottom)
      + `<rect class="hit" x="${x.a}" y="${top}" width="${x.b - x.a}" height="${bottom - top}"/></svg>`;
    el.innerHTML = svg;
    hover(el, section, (mx, my) => {
      crosshair(section, mx);
      const at = x.invert(mx);
      if (my >= lanesTop) {
        const l = Math.floor((my - lanesTop) / laneH);
        const i = layout.findIndex((g) => g.lane === l && g.a - 3 <= mx && mx <= g.b + 3);
        if (i >= 0) return gapTip(gaps[i]);
      }
      const hour = Math.floor(at / HOUR) * HOUR;
      const h = hours.find((e) => e.t === hour) || { trades: 0, gaps: 0 };
      const touching = gaps.filter((g) => g.from < hour + HOUR && g.to >= hour);
      const until = new Date(hour + HOUR);
      return `<div class="title">${utc(hour, "min").slice(0, 16)}–`
        + `${pad(until.getUTCHours())}:00 UTC</div>`
        + row("trades", whole.format(h.trades))
        + row("declared gaps", touching.length
          ? touching.map((g) => `<span class="swatch r-${esc(g.reason)}"></span>${esc(g.reason)}`)
            .join("<br>")
          : "none");
    });
  }

  function gapTip(g) {
    return `<div class="title"><span class="swatch r-${esc(g.reason)}"></span>${esc(g.reason)}</div>`
      + `<div class="why">${esc(g.why)}</div>`
      + row("from", esc(g.from_utc)) + row("to", esc(g.to_utc))
      + row("length", duration(g.to - g.from));
  }

  function gapTable(sym) {
    if (!sym.gaps.length) return `<p class="muted">No declared gaps: every trade is in the lake.</p>`;
    const rows = [...sym.gaps].sort((g, h) => g.from - h.from).map((g) => `<tr>`
      + `<td class="reason"><span class="swatch r-${esc(g.reason)}"></span>${esc(g.reason)}</td>`
      + `<td class="num">${esc(g.from_utc)}</td><td class="num">${esc(g.to_utc)}</td>`
      + `<td class="num">${duration(g.to - g.from)}</td><td class="why">${esc(g.why)}</td></tr>`);
    return `<div class="scroll"><table class="gaps"><thead><tr><th>reason</th><th>from (UTC)</th><th>to (UTC)</th>`
      + `<th>length</th><th>meaning</th></tr></thead><tbody>${rows.join("")}</tbody></table></div>`;
  }

  // ---------------------------------------------------------------- page

  function sparkline(sym) {
    const closes = sym.candles.c;
    if (closes.length < 2) return "";
    const w = 64;
    const h = 26;
    const lo = Math.min(...closes);
    const hi = Math.max(...closes);
    const y = linear(lo, hi || lo + 1, h - 3, 3);
    const d = closes.map((v, i) => `${i ? "L" : "M"}${px((i / (closes.length - 1)) * w)} ${px(y(v))}`);
    const up = closes.at(-1) >= closes[0];
    return `<svg class="spark" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" aria-hidden="true">`
      + `<path class="${up ? "up" : "down"}" d="${d.join("")}"/></svg>`;
  }

  function changeText(change) {
    const cls = change >= 0 ? "buy-text" : "sell-text";
    return `<span class="${cls}">${change >= 0 ? "▲" : "▼"} ${Math.abs(change).toFixed(2)}%</span>`;
  }

  /** A share as a percentage that never rounds a part up to the whole or down to nothing. */
  function percent(share) {
    if (share >= 1 || share <= 0) return `${share * 100}%`;
    return `${Math.min(99.9, Math.max(0.1, share * 100)).toFixed(1)}%`;
  }

  function stat(label, value, note = "") {
    return `<div class="stat"><div class="label">${label}</div><div class="value">${value}</div>`
      + `${note ? `<div class="note">${note}</div>` : ""}</div>`;
  }

  function sectionHtml(sym) {
    const st = sym.stats;
    const sampled = sym.price.buckets
      ? `${whole.format(sym.price.t.length)} of ${whole.format(st.trades)} trades drawn: the lowest `
        + `and highest price of each side in each of ${whole.format(sym.price.buckets)} time slices`
      : `every trade drawn (${whole.format(st.trades)})`;
    return `<section class="symbol" id="sym-${esc(sym.symbol)}" data-symbol="${esc(sym.symbol)}">`
      + `<div class="symbol-head"><h2>${esc(sym.symbol)}<span class="market">${esc(sym.market)}</span></h2>`
      + `<div class="last">${esc(st.close)} ${changeText(st.change)}</div></div>`
      + `<div class="stats">`
      + stat("trades (read once)", whole.format(st.trades),
        st.stored > st.trades ? `${whole.format(st.stored - st.trades)} stored twice, read once` : "no stored duplicates")
      + stat("first trade", esc(st.first.slice(11)), esc(st.first.slice(0, 10)))
      + stat("last trade", esc(st.last.slice(11)), esc(st.last.slice(0, 10)))
      + stat("price range", `${esc(st.low)} – ${esc(st.high)}`)
      + stat("declared gaps", whole.format(st.gap_count), `${percent(st.covered)} of the shown time `
        + `outside gaps`)
      + `</div>`
      + `<div class="card"><h3>Price over time <small>UTC · coloured by taker side · `
      + `hatched: declared gaps</small></h3><div class="legend">${legendSides()}`
      + `<span class="key"><i class="hatch"></i>declared gap</span></div>`
      + `<div class="plot" data-chart="price"></div><p class="note">${sampled}</p></div>`
      + `<div class="card"><h3>OHLCV candles <small>${barName(sym.candles.bar)} bars · `
      + `${esc(sym.candles.source)}</small></h3><div class="legend">`
      + `<span class="key"><i class="box up"></i>close ≥ open</span>`
      + `<span class="key"><i class="box down"></i>close &lt; open</span>`
      + `<span class="key"><i class="line vwap-key"></i>VWAP</span>${legendSides("volume")}</div>`
      + `<div class="plot" data-chart="candles"></div></div>`
      + `<div class="card"><h3>Completeness <small>trades per hour and the declared gaps, UTC</small></h3>`
      + `<div class="legend"><span class="key"><i class="hour-key"></i>hour with no declared gap: `
      + `complete</span><span class="key"><i class="hour-key touched"></i>hour touched by a declared `
      + `gap: its trades are a lower bound</span></div>`
      + `<div class="plot" data-chart="completeness"></div>${gapTable(sym)}</div>`
      + `<div class="card"><h3>Top-50 prices by side <small>the 50 most frequent prices of each side, `
      + `in price order</small></h3><div class="legend"><span class="key">trades at the price:</span>`
      + `<span class="key"><i class="ramp buy"></i><i class="ramp sell"></i>`
      + `few → ${whole.format(Math.max(0, ...sym.top.map((c) => c.trades)))}</span>`
      + `<span class="key"><i class="ramp none"></i>not in that side's top 50</span></div>`
      + `<div class="plot" data-chart="heat"></div></div>`
      + `</section>`;
  }

  function legendSides(what = "") {
    return ["buy", "sell"].map((side) => `<span class="key"><i class="dot ${side}"></i>${side}`
      + `${what ? ` ${what}` : ""}</span>`).join("");
  }

  const CHARTS = {
    price: priceChart,
    candles: candleChart,
    completeness: completenessChart,
    heat: heatMap,
  };

  function drawAll() {
    let drawn = 0;
    for (const section of document.querySelectorAll("section.symbol")) {
      const sym = bySymbol.get(section.dataset.symbol);
      for (const el of section.querySelectorAll(".plot")) {
        const width = Math.max(320, Math.floor(el.clientWidth));
        CHARTS[el.dataset.chart](el, section, sym, width);
        drawn += 1;
      }
    }
    document.documentElement.dataset.charts = String(drawn);
  }

  const bySymbol = new Map(data.symbols.map((sym) => [sym.symbol, sym]));
  const main = document.getElementById("report");
  const picker = document.getElementById("picker");
  main.innerHTML = data.symbols.map(sectionHtml).join("");
  picker.innerHTML = data.symbols.map((sym) => `<a class="chip" href="#sym-${esc(sym.symbol)}">`
    + `<span class="name">${esc(sym.symbol)}</span>${sparkline(sym)}`
    + `<span class="change">${changeText(sym.stats.change)}</span></a>`).join("");

  const chips = [...picker.querySelectorAll(".chip")];
  const observer = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      for (const chip of chips) {
        chip.classList.toggle("active", chip.getAttribute("href") === `#${entry.target.id}`);
      }
    }
  }, { rootMargin: "-30% 0px -60% 0px" });
  for (const section of main.querySelectorAll("section.symbol")) observer.observe(section);

  const palette = document.getElementById("palette");
  palette.addEventListener("click", () => {
    const on = document.body.classList.toggle("cvd");
    palette.setAttribute("aria-pressed", String(on));
  });

  let pending = 0;
  let drawnWidth = main.clientWidth;
  window.addEventListener("resize", () => {
    cancelAnimationFrame(pending);
    pending = requestAnimationFrame(() => {
      if (main.clientWidth !== drawnWidth) {
        drawnWidth = main.clientWidth;
        drawAll();
      }
    });
  });
  drawAll();
  document.documentElement.dataset.state = "ready";
})();
