"""Server-side SVG charts: a trend line and a bar chart by group.

Plain SVG strings with a title and description for screen readers; the page puts a
data table next to each, so nothing needs a script or the network at view time.
Coordinates are in viewBox units, so charts scale to the width of a phone. Text drawn
or read out (description, target, axis numbers, "no data") is in the page's language
(``tr``, English by default).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from civicflow.metrics.i18n import Tr, number

WIDTH = 400
FONT = 15
ON_COLOUR = "#1d5fa8"  # on target / neutral
OFF_COLOUR = "#b4480c"  # off target (orange-brown, distinct from blue for colour-blind readers)
MUTED = "#5f6b76"
#: an axis label's width per character, in viewBox units (a generous average at FONT)
CHAR_WIDTH = FONT * 0.6


@dataclass(frozen=True)
class LinePoint:
    label: str
    value: float | None
    #: shorter label for the x axis (e.g. "Dec 27"); defaults to label
    short: str = ""


@dataclass(frozen=True)
class Bar:
    label: str
    value: float | None
    #: text shown instead of a bar when there is no value (e.g. "suppressed")
    note: str = ""


def nice_ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2, 2.5, 5 × a power of ten)."""
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    start = math.floor(lo / step) * step
    ticks = [round(start, 10)]
    while ticks[-1] < hi:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def fmt(value: float, decimals: int, lang: str = "en") -> str:
    """``value`` as the page shows it: 1,234.5 (Spanish 1.234,5)."""
    return number(value, decimals, lang)


def _label_indexes(labels: Sequence[str], plot_w: float) -> list[int]:
    """The periods the x axis names: the first, the last and up to 3 evenly between, never
    two closer than one and a half times the longest label (the end ones are anchored at
    the edges, the others centred), so they do not collide, in any language."""
    n = len(labels)
    if n <= 1:
        return list(range(n))
    gap = 1.5 * max(len(label) for label in labels) * CHAR_WIDTH
    most = max(1, min(4, n - 1, math.floor(plot_w / gap)))
    # an interval count that divides the periods evenly, unless that halves the labels
    k = next((k for k in range(most, 0, -1) if (n - 1) % k == 0 and 2 * k > most), most)
    return sorted({round(i * (n - 1) / k) for i in range(k + 1)})


def _open(chart_id: str, height: float, title: str, desc: str) -> str:
    return (
        f'<svg class="chart-svg" viewBox="0 0 {WIDTH} {height:.0f}" role="img" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc" preserveAspectRatio="xMidYMid meet" '
        f'xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif" font-size="{FONT}">'
        f'<title id="{chart_id}-title">{escape(title)}</title><desc id="{chart_id}-desc">{escape(desc)}</desc>'
    )


def line_chart(
    chart_id: str,
    title: str,
    points: Sequence[LinePoint],
    unit: str,
    decimals: int,
    target: float | None = None,
    tr: Tr = Tr(),
) -> str:
    """Trend over periods; missing values leave a gap; the target is a dashed line."""
    height = 220
    left, right, top, bottom = 44, 12, 18, 40
    plot_w, plot_h = WIDTH - left - right, height - top - bottom
    values = [p.value for p in points if p.value is not None]
    shown = values + ([target] if target is not None else [])
    lo = min(0.0, *shown) if shown else 0.0
    hi = max(shown) if shown else 1.0
    ticks = nice_ticks(lo, hi)
    y_lo, y_hi = ticks[0], ticks[-1]

    def x(i: int) -> float:
        return left + (plot_w / 2 if len(points) == 1 else plot_w * i / (len(points) - 1))

    def y(v: float) -> float:
        return top + plot_h - (v - y_lo) / (y_hi - y_lo) * plot_h

    desc = tr._("%(n)s of %(total)s periods have a value") % {
        "n": tr.integer(len(values)),
        "total": tr.integer(len(points)),
    }
    if values:
        desc += tr._("; latest %(latest)s %(unit)s; range %(low)s to %(high)s %(unit)s") % {
            "latest": tr.number(values[-1], decimals),
            "low": tr.number(min(values), decimals),
            "high": tr.number(max(values), decimals),
            "unit": unit,
        }
    parts = [_open(chart_id, height, title, desc)]
    for t in ticks:
        parts.append(
            f'<line x1="{left}" x2="{WIDTH - right}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#d8dee4" stroke-width="1"/>'
        )
        parts.append(
            f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end" fill="{MUTED}">{escape(tr.compact(t))}</text>'
        )
    for i in _label_indexes([p.short or p.label for p in points], plot_w):
        anchor = (
            "middle"
            if 0 < i < len(points) - 1 or len(points) == 1
            else ("start" if i == 0 else "end")
        )
        parts.append(
            f'<text x="{x(i):.1f}" y="{height - bottom + 18}" text-anchor="{anchor}" fill="{MUTED}">{escape(points[i].short or points[i].label)}</text>'
        )
    if target is not None:
        parts.append(
            f'<line x1="{left}" x2="{WIDTH - right}" y1="{y(target):.1f}" y2="{y(target):.1f}" stroke="{OFF_COLOUR}" stroke-width="1.5" stroke-dasharray="6 4"/>'
        )
        parts.append(
            f'<text x="{WIDTH - right}" y="{y(target) - 5:.1f}" text-anchor="end" fill="{OFF_COLOUR}">{escape(tr._("target %(value)s") % {"value": tr.number(target, decimals)})}</text>'
        )
    segment: list[str] = []
    segments: list[list[str]] = []
    for i, p in enumerate(points):
        if p.value is None:
            if segment:
                segments.append(segment)
            segment = []
            continue
        segment.append(f"{x(i):.1f},{y(p.value):.1f}")
    if segment:
        segments.append(segment)
    for seg in segments:
        if len(seg) > 1:
            parts.append(
                f'<polyline points="{" ".join(seg)}" fill="none" stroke="{ON_COLOUR}" stroke-width="2.5" stroke-linejoin="round"/>'
            )
    if len(points) <= 40:
        for i, p in enumerate(points):
            if p.value is not None:
                parts.append(
                    f'<circle cx="{x(i):.1f}" cy="{y(p.value):.1f}" r="3.5" fill="{ON_COLOUR}"/>'
                )
    elif values:  # long series: mark only the latest point
        i = max(i for i, p in enumerate(points) if p.value is not None)
        parts.append(
            f'<circle cx="{x(i):.1f}" cy="{y(points[i].value or 0):.1f}" r="4" fill="{ON_COLOUR}"/>'
        )
    parts.append(
        f'<line x1="{left}" x2="{WIDTH - right}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="{MUTED}" stroke-width="1"/>'
    )
    parts.append("</svg>")
    return "".join(parts)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def bar_chart(
    chart_id: str,
    title: str,
    bars: Sequence[Bar],
    unit: str,
    decimals: int,
    target: float | None = None,
    lower_is_better: bool | None = None,
    tr: Tr = Tr(),
) -> str:
    """Horizontal bars, one per group, each under its label (long names stay readable on a
    phone); bars missing the target are drawn in a second colour, the target is dashed."""
    row, top, bottom = 40, 6, 26
    left, value_w = 4, 64
    plot_w = WIDTH - left - value_w
    height = top + row * max(1, len(bars)) + bottom
    values = [b.value for b in bars if b.value is not None]
    hi = max(values + ([target] if target is not None else []), default=1.0)
    lo = min(0.0, *values) if values else 0.0
    ticks = nice_ticks(lo, hi if hi > lo else lo + 1)
    x_lo, x_hi = ticks[0], ticks[-1]

    def x(v: float) -> float:
        return left + (v - x_lo) / (x_hi - x_lo) * plot_w

    off = 0
    parts: list[str] = []
    for i, b in enumerate(bars):
        y0 = top + i * row
        parts.append(
            f'<text x="{left}" y="{y0 + 14}" fill="#1b1f24">{escape(_truncate(b.label, 44))}<title>{escape(b.label)}</title></text>'
        )
        if b.value is None:
            parts.append(
                f'<text x="{left}" y="{y0 + 32}" fill="{MUTED}" font-style="italic">{escape(b.note or tr._("no data"))}</text>'
            )
            continue
        missed = (
            target is not None
            and lower_is_better is not None
            and (b.value > target if lower_is_better else b.value < target)
        )
        off += missed
        x0, x1 = sorted((x(0.0 if x_lo <= 0 else x_lo), x(b.value)))
        parts.append(
            f'<rect x="{x0:.1f}" y="{y0 + 19}" width="{max(x1 - x0, 1):.1f}" height="15" fill="{OFF_COLOUR if missed else ON_COLOUR}"/>'
        )
        parts.append(
            f'<text x="{x1 + 4:.1f}" y="{y0 + 31}" fill="#1b1f24">{escape(tr.number(b.value, decimals))}</text>'
        )
    axis_y = top + row * max(1, len(bars))
    for t in ticks:
        parts.append(
            f'<text x="{x(t):.1f}" y="{axis_y + 18}" text-anchor="middle" fill="{MUTED}">{escape(tr.compact(t))}</text>'
        )
    if target is not None:
        tx = x(target)
        parts.append(
            f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{top + 17}" y2="{axis_y}" stroke="#1b1f24" stroke-width="1.5" stroke-dasharray="4 3"/>'
        )
    desc = tr._("%(n)s groups") % {"n": tr.integer(len(bars))}
    if values:
        desc += tr._("; from %(low)s to %(high)s %(unit)s") % {
            "low": tr.number(min(values), decimals),
            "high": tr.number(max(values), decimals),
            "unit": unit,
        }
    if target is not None and lower_is_better is not None:
        desc += tr._("; %(off)s of %(n)s miss the target of %(target)s %(unit)s") % {
            "off": tr.integer(off),
            "n": tr.integer(len(values)),
            "target": tr.number(target, decimals),
            "unit": unit,
        }
    return _open(chart_id, height, title, desc) + "".join(parts) + "</svg>"
