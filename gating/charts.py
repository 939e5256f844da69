"""Server-side charts as inline SVG strings: no JavaScript, no CDN, readable without a browser.

Why hand-written SVG and not a vendored charting library (issue 13, item 5): the dashboard needs
five chart shapes (horizontal bars, lines, a heatmap) whose every label comes from a report we
already hold on the server. Drawing them here keeps the page working without JavaScript, lets
unit tests check the geometry (labels apart, legend entries present, notes written) on the SVG
string itself, and leaves no third-party code to vendor, audit and update. A library would have
to be configured to do the same things we need anyway (wrapped expert names, a reference label
clear of the bars, distinct dash patterns for coinciding lines, a note when two series are the
same), so it would add weight without removing any of this code.

Layout rules every chart follows, so labels never collide:
- category labels (expert and domain names) sit on the left of horizontal bars, wrapped to two
  lines of the label column and shortened with "…" beyond that; the full name is the tooltip;
- every text is placed by its estimated width (`text_width`, generous for system fonts) and
  legends wrap onto new rows instead of running into each other;
- reference labels ("even share") sit in the margin above the plot, never on a bar;
- two series with the same values are drawn once and say so in a note (bars), or get distinct
  dash patterns and markers plus a "lines coincide" note (lines).
A chart is a `Chart`: the SVG plus the caption and notes the template writes under it.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

from django.utils.safestring import SafeString, mark_safe

PALETTE = ["#3366cc", "#dc7633", "#2e9e5b", "#9b59b6", "#c0392b", "#16a085", "#7f8c8d"]
# Dash patterns and marker shapes per series, so coinciding lines stay distinguishable.
DASHES = ["", "6 4", "2 3", "10 3 2 3", "4 2"]
MARKERS = ["circle", "square", "triangle", "diamond", "cross"]
W = 560  # every chart has this viewBox width, so text scales alike across the grid
TICK, TITLE = 12, 14  # font sizes (px, viewBox units) of the .tick and .chart-title classes
CHAR_EM = 0.62  # estimated glyph width in em: wider than system-ui's average, on purpose
LINE_H = 15  # distance between text baselines; a text box is about 1.2 em high
SAME = 1e-9  # values closer than this are "identical"
LABEL_W = 190.0  # most width of the category label column (two lines of ~25 chars)


@dataclass
class Chart:
    """One chart: its SVG, a sentence saying what it shows, and notes on what to read into it."""

    svg: SafeString
    caption: str = ""
    notes: list[str] = field(default_factory=list)

    def __html__(self) -> str:
        return self.svg

    def __str__(self) -> str:
        return self.svg

    def __contains__(self, text: str) -> bool:
        return text in self.svg


def text_width(text: str, size: float = TICK) -> float:
    """Estimated rendered width of `text` (px at font size `size`)."""
    return len(text) * size * CHAR_EM


def wrap_label(label: str, max_px: float, *, lines: int = 2, size: float = TICK) -> list[str]:
    """`label` in at most `lines` lines of at most max_px each; the last shortened with "…"."""
    per_line = max(3, int(max_px / (size * CHAR_EM)))
    words = label.replace("-", "- ").replace("_", "_ ").split()
    out: list[str] = []
    current = ""
    for word in words:
        # "- " and "_ " above let names like news-distilbert-head break after a hyphen.
        glue = "" if current.endswith(("-", "_")) or not current else " "
        if len(current + glue + word) <= per_line:
            current += glue + word
            continue
        if current:
            out.append(current)
        current = word
        while len(current) > per_line:
            out.append(current[:per_line])
            current = current[per_line:]
    if current:
        out.append(current)
    if len(out) > lines:
        last = out[lines - 1]
        out = out[: lines - 1] + [last[: per_line - 1] + "…"]
    return out or [""]


def fmt_value(v: float | None, fmt: str = "{:.2f}") -> str:
    return "–" if v is None else fmt.format(v)


def _text(x: float, y: float, text: str, *, anchor: str = "start", cls: str = "tick") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" class="{cls}">'
            f"{escape(text)}</text>")


def _lines_text(x: float, y: float, lines: Sequence[str], *, anchor: str, full: str) -> str:
    """A multi-line label (one <text>, a <tspan> per line) with the full text as its tooltip."""
    spans = "".join(f'<tspan x="{x:.1f}" dy="{0 if i == 0 else LINE_H}">{escape(line)}</tspan>'
                    for i, line in enumerate(lines))
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" class="tick">'
            f"<title>{escape(full)}</title>{spans}</text>")


def _svg(body: list[str], title: str, height: float) -> SafeString:
    h = int(math.ceil(height))
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
            f'viewBox="0 0 {W} {h}" width="{W}" height="{h}" '
            f'preserveAspectRatio="xMinYMin meet">'
            f"<title>{escape(title)}</title>"
            + _text(W / 2, 18, title, anchor="middle", cls="chart-title"))
    return mark_safe(head + "".join(body) + "</svg>")  # noqa: S308 - every label is escaped


def _nice_ticks(vmax: float, n: int = 4) -> list[float]:
    """0 and up to n round steps reaching at least vmax."""
    if vmax <= 0:
        return [0.0, 1.0]
    raw = vmax / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    count = int(math.ceil(vmax / step - 1e-9))
    return [round(i * step, 12) for i in range(count + 1)]


def _legend(items: Sequence[tuple[str, str]], y: float, *,
            left: float = 12) -> tuple[list[str], float]:
    """Legend entries (name, swatch svg at 0,0) in rows that wrap before the right edge;
    returns the svg and the y below the last row."""
    out, x = [], left
    for name, swatch in items:
        w = 26 + text_width(name)
        if x > left and x + w > W - 8:
            x, y = left, y + LINE_H + 4
        out.append(f'<g transform="translate({x:.1f},{y - 4:.1f})">{swatch}</g>')
        out.append(_text(x + 24, y, name))
        x += w + 16
    return out, y + LINE_H


def _rect_swatch(color: str) -> str:
    return f'<rect x="0" y="-6" width="18" height="10" fill="{color}"/>'


def identical_pairs(series: dict[str, Sequence[float | None]]) -> list[tuple[str, str]]:
    """Pairs of series (earlier, later) whose values are all the same."""
    names = list(series)
    pairs = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            va, vb = series[a], series[b]
            if len(va) == len(vb) and all(
                    (x is None and y is None) or (x is not None and y is not None
                                                  and abs(x - y) <= SAME)
                    for x, y in zip(va, vb, strict=True)):
                pairs.append((a, b))
    return pairs


def hbars(categories: Sequence[str], series: dict[str, Sequence[float | None]], *,
          title: str, caption: str = "", xmax: float | None = None,
          reference: float | None = None, reference_label: str = "",
          intervals: dict[str, Sequence[Sequence[float] | None]] | None = None,
          fmt: str = "{:.2f}") -> Chart:
    """Horizontal bars: one band per category (label on the left), one bar per series, the value
    at the end of each bar; an optional dashed reference line labelled above the plot.

    Series with identical values are drawn once, named "a = b", with a note saying so.
    intervals: per series, a (low, high) per category drawn as a whisker across the bar.
    """
    intervals = intervals or {}
    notes = []
    series = dict(series)
    for a, b in identical_pairs(series):
        if a in series and b in series:
            series[f"{a} = {b}"] = series.pop(a)
            del series[b]
            if a in intervals:
                intervals[f"{a} = {b}"] = intervals[a]
            notes.append(f"The {a} and {b} values are identical, so one bar is drawn for both.")
    names = list(series)
    values = [v for vs in series.values() for v in vs if v is not None]
    top = xmax if xmax is not None else max(values + [reference or 0.0, 1e-9]) * 1.05
    ticks = _nice_ticks(top) if xmax is None else [xmax * i / 4 for i in range(5)]
    top = ticks[-1]
    label_w = min(LABEL_W, max([text_width(c) for c in categories] + [40.0]))
    left = 12 + label_w + 8
    right_pad = max(text_width(fmt_value(v, fmt)) for v in values + [0.0]) + 10
    plot_w = W - left - right_pad
    bar_h, pitch = 12, 16
    band = max(len(names) * pitch + 8, 2 * LINE_H + 8)
    plot_top = 48 if reference is not None else 34
    body = []
    for t in ticks:
        x = left + plot_w * t / top
        body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{plot_top}" '
                    f'y2="{plot_top + band * len(categories)}" class="grid"/>')
    values_svg = []  # painted after the reference line, so it never strikes a value through
    for c, cat in enumerate(categories):
        y0 = plot_top + c * band
        lines = wrap_label(cat, label_w)
        first = y0 + band / 2 + 4 - (len(lines) - 1) * LINE_H / 2
        body.append(_lines_text(left - 8, first, lines, anchor="end", full=cat))
        bars_top = y0 + (band - len(names) * pitch) / 2
        for s, name in enumerate(names):
            v = series[name][c]
            y = bars_top + s * pitch
            if v is None:
                body.append(_text(left + 4, y + bar_h - 2, "no data"))
                continue
            w = plot_w * max(0.0, min(v, top)) / top
            body.append(f'<rect x="{left:.1f}" y="{y:.1f}" width="{w:.1f}" height="{bar_h}" '
                        f'fill="{PALETTE[s % len(PALETTE)]}">'
                        f"<title>{escape(f'{cat} · {name}: {fmt.format(v)}')}</title></rect>")
            end = left + w
            ci = (intervals.get(name) or [None] * len(categories))[c]
            if ci:
                lo, hi = (left + plot_w * max(0.0, min(b, top)) / top for b in ci)
                mid = y + bar_h / 2
                tip = f"95 % interval {fmt.format(ci[0])} to {fmt.format(ci[1])}"
                body.append(f'<path d="M{lo:.1f},{mid:.1f} H{hi:.1f} M{lo:.1f},{y + 2:.1f} '
                            f'V{y + bar_h - 2:.1f} M{hi:.1f},{y + 2:.1f} V{y + bar_h - 2:.1f}" '
                            f'class="whisker"><title>{escape(tip)}</title></path>')
                end = max(end, hi)
            values_svg.append(_text(end + 4, y + bar_h - 2, fmt.format(v), cls="tick value"))
    plot_bottom = plot_top + band * len(categories)
    body.append(f'<line x1="{left}" x2="{left}" y1="{plot_top}" y2="{plot_bottom}" '
                'class="axis"/>')
    tick_y = plot_bottom + 14
    for t in ticks:
        body.append(_text(left + plot_w * t / top, tick_y, fmt.format(t), anchor="middle"))
    if reference is not None:
        x = left + plot_w * min(reference, top) / top
        body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{plot_top - 4}" y2="{plot_bottom}" '
                    'class="reference"/>')
    body += values_svg
    if reference is not None:
        label = f"{reference_label} {fmt.format(reference)}".strip()
        half = text_width(label) / 2
        # Centred on the line, moved inwards where the chart edge would cut it.
        cx = min(max(x, left + half), W - 4 - half)
        body.append(_text(cx, plot_top - 8, label, anchor="middle", cls="tick reference-label"))
    legend, bottom = _legend([(n, _rect_swatch(PALETTE[s % len(PALETTE)]))
                              for s, n in enumerate(names)], tick_y + LINE_H + 6)
    body += legend
    return Chart(_svg(body, title, bottom + 4), caption, notes)


def _marker(shape: str, x: float, y: float, color: str) -> str:
    if shape == "circle":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{color}"/>'
    if shape == "square":
        return (f'<rect x="{x - 3.5:.1f}" y="{y - 3.5:.1f}" width="7" height="7" fill="none" '
                f'stroke="{color}" stroke-width="1.5"/>')
    if shape == "triangle":
        return (f'<path d="M{x:.1f},{y - 4.5:.1f} L{x + 4:.1f},{y + 3:.1f} L{x - 4:.1f},'
                f'{y + 3:.1f} Z" fill="{color}"/>')
    if shape == "diamond":
        return (f'<path d="M{x:.1f},{y - 5:.1f} L{x + 4.5:.1f},{y:.1f} L{x:.1f},{y + 5:.1f} '
                f'L{x - 4.5:.1f},{y:.1f} Z" fill="none" stroke="{color}" stroke-width="1.5"/>')
    return (f'<path d="M{x - 4:.1f},{y - 4:.1f} L{x + 4:.1f},{y + 4:.1f} M{x - 4:.1f},'
            f'{y + 4:.1f} L{x + 4:.1f},{y - 4:.1f}" stroke="{color}" stroke-width="1.5"/>')


def _line_swatch(s: int) -> str:
    color = PALETTE[s % len(PALETTE)]
    dash = DASHES[s % len(DASHES)]
    return (f'<line x1="0" x2="18" y1="0" y2="0" stroke="{color}" stroke-width="2"'
            + (f' stroke-dasharray="{dash}"' if dash else "") + "/>"
            + _marker(MARKERS[s % len(MARKERS)], 9, 0, color))


def lines(series: dict[str, Sequence[tuple[float, float | None]]], *, title: str,
          caption: str = "", x_label: str = "epoch", fmt: str = "{:.2f}") -> Chart:
    """One line per series over a shared x axis, each with its own colour, dash pattern and
    marker; series that coincide are named in a note ("lines coincide")."""
    clean = {name: [(x, y) for x, y in ps if y is not None and math.isfinite(y)]
             for name, ps in series.items()}
    points = [p for ps in clean.values() for p in ps]
    if not points:
        return Chart(_svg([_text(20, 60, "no data yet")], title, 80), caption)
    notes = [f"The lines of “{a}” and “{b}” coincide: the values are the same, so one is drawn "
             "on top of the other (told apart by dash pattern and marker)."
             for a, b in identical_pairs({n: [y for _, y in ps] for n, ps in clean.items()})]
    xmin, xmax = min(p[0] for p in points), max(p[0] for p in points)
    yticks = _nice_ticks(max(p[1] for p in points))
    ymax = yticks[-1]
    left = 12 + max(text_width(fmt.format(t)) for t in yticks) + 6
    right, plot_top, plot_h = 16, 32, 150
    plot_w = W - left - right
    span = (xmax - xmin) or 1
    body = []
    for t in yticks:
        y = plot_top + plot_h - plot_h * t / ymax
        body.append(f'<line x1="{left:.1f}" x2="{W - right}" y1="{y:.1f}" y2="{y:.1f}" '
                    'class="grid"/>')
        body.append(_text(left - 6, y + 4, fmt.format(t), anchor="end"))

    def at(x: float, y: float) -> tuple[float, float]:
        return left + plot_w * (x - xmin) / span, plot_top + plot_h - plot_h * y / ymax

    for s, (name, ps) in enumerate(clean.items()):
        color, dash = PALETTE[s % len(PALETTE)], DASHES[s % len(DASHES)]
        coords = " ".join(f"{px:.1f},{py:.1f}" for px, py in (at(x, y) for x, y in ps))
        body.append(f'<polyline points="{coords}" fill="none" stroke-width="2" '
                    f'stroke="{color}"' + (f' stroke-dasharray="{dash}"' if dash else "")
                    + f' data-series="{escape(name)}"><title>{escape(name)}</title></polyline>')
        # Markers on at most about a dozen points, so long runs do not turn into a smear.
        stride = max(1, math.ceil(len(ps) / 12))
        body += [_marker(MARKERS[s % len(MARKERS)], *at(x, y), color) for x, y in ps[::stride]]
    # x ticks at whole steps at least 40 px apart, the last one carrying the axis name
    xs = sorted({x for x, _ in points})
    step = max(1, math.ceil(len(xs) * 40 / plot_w))
    shown = xs[::step]
    tick_y = plot_top + plot_h + 14
    for x in shown:
        body.append(_text(at(x, 0)[0], tick_y, f"{x:g}", anchor="middle"))
    body.append(_text(W - right, tick_y + LINE_H, x_label, anchor="end"))
    legend, bottom = _legend([(n, _line_swatch(s)) for s, n in enumerate(clean)],
                             tick_y + 2 * LINE_H + 6)
    body += legend
    return Chart(_svg(body, title, bottom + 4), caption, notes)


def heatmap(rows: Sequence[str], cols: Sequence[str], values: Sequence[Sequence[float]], *,
            title: str, caption: str = "") -> Chart:
    """A rows × cols grid of shares in [0, 1], darker = larger, with the value in each cell."""
    label_w = min(LABEL_W, max([text_width(r) for r in rows] + [40.0]))
    left, top = 12 + label_w + 8, 30
    cell_w = (W - left - 8) / max(len(cols), 1)
    col_lines = [wrap_label(c, cell_w - 6) for c in cols]
    head_h = LINE_H * max(len(ls) for ls in col_lines) if cols else 0
    grid_top = top + head_h + 6
    cell_h = max(28, 2 * LINE_H + 4) if any(len(wrap_label(r, label_w)) > 1 for r in rows) else 28
    body = []
    for c, lines_ in enumerate(col_lines):
        body.append(_lines_text(left + c * cell_w + cell_w / 2, top + 11, lines_,
                                anchor="middle", full=cols[c]))
    for r, row in enumerate(rows):
        y = grid_top + r * cell_h
        lines_ = wrap_label(row, label_w)
        first = y + cell_h / 2 + 4 - (len(lines_) - 1) * LINE_H / 2
        body.append(_lines_text(left - 8, first, lines_, anchor="end", full=row))
        for c, col in enumerate(cols):
            v = float(values[r][c])
            x = left + c * cell_w
            shade = int(245 - 190 * max(0.0, min(1.0, v)))
            fg = "#fff" if v > 0.55 else "#222"
            fill = f"rgb({shade},{min(shade + 5, 250)},255)"
            body.append(f'<rect x="{x:.1f}" y="{y}" width="{cell_w - 2:.1f}" '
                        f'height="{cell_h - 2}" fill="{fill}">'
                        f"<title>{escape(f'{row} → {col}: {v:.3f}')}</title></rect>")
            body.append(f'<text x="{x + cell_w / 2:.1f}" y="{y + cell_h / 2 + 3:.1f}" '
                        # A style, not a fill attribute: the .tick rule would override it.
                        f'text-anchor="middle" class="tick" style="fill:{fg}">{v:.2f}</text>')
    return Chart(_svg(body, title, grid_top + cell_h * len(rows) + 8), caption)
