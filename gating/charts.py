"""Server-side charts as inline SVG strings: no JavaScript, no CDN, readable without a browser."""
from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from django.utils.safestring import SafeString, mark_safe

PALETTE = ["#3366cc", "#dc7633", "#2e9e5b", "#9b59b6", "#c0392b", "#16a085", "#7f8c8d"]
W, H = 560, 260
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 28, 64


def _svg(body: list[str], title: str, width: int = W, height: int = H) -> SafeString:
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
            f'viewBox="0 0 {width} {height}" width="{width}" height="{height}">'
            f'<title>{escape(title)}</title>'
            f'<text x="{width / 2:.0f}" y="16" text-anchor="middle" class="chart-title">'
            f'{escape(title)}</text>')
    return mark_safe(head + "".join(body) + "</svg>")  # noqa: S308 - every label is escaped


def _short(label: str, n: int = 16) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def _y_axis(top: float, ymax: float, fmt: str = "{:.2f}") -> list[str]:
    plot_h = H - TOP - BOTTOM
    out = []
    for i in range(5):
        v = ymax * i / 4
        y = TOP + plot_h - plot_h * i / 4
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                   'class="grid"/>')
        out.append(f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end" class="tick">'
                   f"{escape(fmt.format(v))}</text>")
    return out


def _legend(names: Sequence[str], y: float) -> list[str]:
    out, x = [], LEFT
    for i, name in enumerate(names):
        color = PALETTE[i % len(PALETTE)]
        out.append(f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{color}"/>')
        out.append(f'<text x="{x + 14}" y="{y}" class="tick">{escape(name)}</text>')
        x += 24 + 7 * len(name)
    return out


def grouped_bars(categories: Sequence[str], series: dict[str, Sequence[float | None]], *,
                 title: str, ymax: float | None = None, reference: float | None = None,
                 reference_label: str = "", fmt: str = "{:.2f}") -> SafeString:
    """Bars per category, one colour per series; an optional dashed reference line."""
    values = [v for vs in series.values() for v in vs if v is not None]
    top = ymax if ymax is not None else max(values + [reference or 0, 1e-9]) * 1.1
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    body = _y_axis(TOP, top, fmt)
    n_series = max(len(series), 1)
    slot = plot_w / max(len(categories), 1)
    bar_w = slot * 0.8 / n_series
    for c, cat in enumerate(categories):
        x0 = LEFT + c * slot + slot * 0.1
        for s, (name, vs) in enumerate(series.items()):
            v = vs[c]
            if v is None:
                continue
            h = plot_h * max(0.0, min(v, top)) / top
            x = x0 + s * bar_w
            body.append(f'<rect x="{x:.1f}" y="{TOP + plot_h - h:.1f}" width="{bar_w - 2:.1f}" '
                        f'height="{h:.1f}" fill="{PALETTE[s % len(PALETTE)]}">'
                        f"<title>{escape(f'{cat} · {name}: {fmt.format(v)}')}</title></rect>")
        body.append(f'<text x="{LEFT + c * slot + slot / 2:.1f}" y="{TOP + plot_h + 14}" '
                    f'text-anchor="middle" class="tick">{escape(_short(cat))}</text>')
    if reference is not None:
        y = TOP + plot_h - plot_h * min(reference, top) / top
        body.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                    'class="reference"/>')
        body.append(f'<text x="{W - RIGHT}" y="{y - 4:.1f}" text-anchor="end" class="tick">'
                    f"{escape(reference_label)}</text>")
    body += _legend(list(series), H - 12)
    return _svg(body, title)


def line_chart(series: dict[str, Sequence[tuple[float, float]]], *, title: str,
               x_label: str = "epoch") -> SafeString:
    """One polyline per series over a shared x axis."""
    points = [p for ps in series.values() for p in ps]
    if not points:
        return _svg(['<text x="20" y="60" class="tick">no data</text>'], title)
    xmin, xmax = min(p[0] for p in points), max(p[0] for p in points)
    ymax = max(max(p[1] for p in points), 1e-9) * 1.1
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    body = _y_axis(TOP, ymax)
    span = (xmax - xmin) or 1
    for s, (name, ps) in enumerate(series.items()):
        coords = " ".join(
            f"{LEFT + plot_w * (x - xmin) / span:.1f},{TOP + plot_h - plot_h * y / ymax:.1f}"
            for x, y in ps if y is not None and math.isfinite(y)
        )
        body.append(f'<polyline points="{coords}" fill="none" stroke-width="2" '
                    f'stroke="{PALETTE[s % len(PALETTE)]}"><title>{escape(name)}</title>'
                    "</polyline>")
    body.append(f'<text x="{LEFT}" y="{TOP + plot_h + 14}" class="tick">{xmin:g}</text>')
    body.append(f'<text x="{W - RIGHT}" y="{TOP + plot_h + 14}" text-anchor="end" '
                f'class="tick">{xmax:g} {escape(x_label)}</text>')
    body += _legend(list(series), H - 12)
    return _svg(body, title)


def heatmap(rows: Sequence[str], cols: Sequence[str], values: Sequence[Sequence[float]], *,
            title: str) -> SafeString:
    """A rows × cols grid of shares in [0, 1], darker = larger, with the value in each cell."""
    left, top = 110, 34
    cell_w = max(48, min(110, (W - left - 10) / max(len(cols), 1)))
    cell_h = 28
    # At least a full chart's width, so the caption below the grid is never cut off.
    width = max(int(left + cell_w * len(cols) + 10), W)
    height = int(top + cell_h * len(rows) + 60)
    body = []
    for r, row in enumerate(rows):
        y = top + r * cell_h
        body.append(f'<text x="{left - 6}" y="{y + cell_h / 2 + 4:.1f}" text-anchor="end" '
                    f'class="tick">{escape(_short(row))}</text>')
        for c, _col in enumerate(cols):
            v = float(values[r][c])
            x = left + c * cell_w
            shade = int(245 - 190 * max(0.0, min(1.0, v)))
            fg = "#fff" if v > 0.55 else "#222"
            fill = f"rgb({shade},{min(shade + 5, 250)},255)"
            body.append(f'<rect x="{x:.1f}" y="{y}" width="{cell_w - 2:.1f}" '
                        f'height="{cell_h - 2}" fill="{fill}">'
                        f"<title>{escape(f'{row} → {cols[c]}: {v:.3f}')}</title></rect>")
            body.append(f'<text x="{x + cell_w / 2:.1f}" y="{y + cell_h / 2 + 3:.1f}" '
                        # A style, not a fill attribute: the .tick rule would override it.
                        f'text-anchor="middle" class="tick" style="fill:{fg}">{v:.2f}</text>')
    for c, col in enumerate(cols):
        x = left + c * cell_w + cell_w / 2
        y = top + len(rows) * cell_h + 14
        body.append(f'<text x="{x:.1f}" y="{y}" text-anchor="middle" class="tick">'
                    f"{escape(_short(col, 14))}</text>")
    body.append(f'<text x="10" y="{height - 8}" class="tick">rows: input domain · '
                "columns: expert · cell: share of the domain's dispatches</text>")
    return _svg(body, title, width=width, height=height)
