"""The leadership page: certification level, then every KPI with its charts and tables.

One static HTML file with its stylesheet and SVG inline: no script, no web font, no
other request at all, so it works wherever it is served (with or without a trailing
slash) and from disk. Each chart is a ``<figure class="chart">`` holding the SVG
and a ``<table>`` with the same numbers, for screen readers and for copying.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

from civicflow.metrics.card import Scorecard
from civicflow.metrics.certification import CertificationResult, CriterionResult
from civicflow.metrics.charts import Bar, LinePoint, bar_chart, fmt, line_chart
from civicflow.metrics.compute import KpiResult, Point, axis_label, period_label

STATUS_TEXT = {
    "on_track": "On track",
    "off_track": "Off track",
    "no_target": "No target set",
    "provisional": "Provisional",
    "no_data": "No data",
}

STYLESHEET = """
:root { --ink: #1b1f24; --muted: #5f6b76; --line: #d8dee4; --on: #1d5fa8; --off: #b4480c; --ok: #1a7f37; --bg: #f6f8fa; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); background: #fff; overflow-wrap: break-word; }
header, main, footer { max-width: 62rem; margin: 0 auto; padding: 0 1rem; }
header { padding-top: 1.25rem; border-bottom: 1px solid var(--line); }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.3rem; margin: 2rem 0 .75rem; }
h3 { font-size: 1.1rem; margin: 0 0 .25rem; }
h4 { font-size: 1rem; margin: 1rem 0 .25rem; }
a { color: var(--on); }
.muted, figcaption { color: var(--muted); font-size: .9rem; }
nav a { margin-right: 1rem; display: inline-block; }
.level { display: flex; flex-wrap: wrap; gap: 1rem 2rem; align-items: baseline; background: var(--bg); border: 1px solid var(--line); border-radius: 8px; padding: 1rem; }
.level-name { font-size: 2rem; font-weight: 700; }
.progress { width: 100%; }
.progress svg { width: 100%; height: auto; max-width: 26rem; display: block; }
.cards { display: grid; gap: 1.25rem; grid-template-columns: minmax(0, 1fr); }
.kpi { border: 1px solid var(--line); border-radius: 8px; padding: 1rem; min-width: 0; }
.kpi-head { display: flex; flex-wrap: wrap; justify-content: space-between; gap: .5rem 1rem; align-items: baseline; }
.value { font-size: 2rem; font-weight: 700; }
.pill { display: inline-block; border-radius: 999px; padding: .1rem .6rem; font-size: .85rem; font-weight: 600; border: 1px solid currentColor; }
.on_track { color: var(--ok); } .off_track { color: var(--off); } .no_target, .no_data, .provisional { color: var(--muted); }
.charts { display: grid; gap: 1rem; grid-template-columns: minmax(0, 1fr); }
@media (max-width: 30rem) { header, main, footer { padding: 0 .75rem; } .kpi { padding: .75rem .6rem; } }
@media (min-width: 60rem) { .charts { grid-template-columns: repeat(2, minmax(0, 1fr)); } }
figure.chart { margin: 0; min-width: 0; }
.chart-svg { width: 100%; height: auto; display: block; }
.table-wrap { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: .9rem; margin: .25rem 0; }
th, td { text-align: left; padding: .2rem .6rem .2rem 0; border-bottom: 1px solid var(--line); vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
details { margin: .25rem 0; }
summary { cursor: pointer; color: var(--on); }
.met { color: var(--ok); font-weight: 600; } .unmet { color: var(--off); font-weight: 600; }
ul.missing li { margin-bottom: .35rem; }
code, pre { font-size: .8rem; white-space: pre-wrap; }
footer { margin-top: 2rem; padding-bottom: 2rem; border-top: 1px solid var(--line); }
"""


def _e(value: object) -> str:
    return escape(str(value))


def _value_text(value: float | None, unit: str, decimals: int) -> str:
    if value is None:
        return "—"
    number = fmt(value, decimals)
    # non-breaking spaces keep "95.0 %" and "2.8 days" on one line in narrow tables
    return f"{number}\u00a0%" if unit == "%" else f"{number}\u00a0{unit}"


def _table(headers: list[str], rows: list[list[str]], numeric: set[int], caption: str) -> str:
    head = "".join(
        f'<th scope="col"{" class=num" if i in numeric else ""}>{_e(h)}</th>'
        for i, h in enumerate(headers)
    )
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=num' if i in numeric else ''}>{c}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f'<div class="table-wrap"><table><caption class="muted">{_e(caption)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _when(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return iso


def _records(n: int, suppressed: bool, min_records: int) -> str:
    return f"fewer than {min_records}" if suppressed else f"{n:,}"


def _open_text(r: KpiResult, p: Point) -> str:
    if p.open_share is None:
        return ""
    return f"{fmt(p.open_share, 0)}\u00a0%" + (" (provisional)" if r.is_provisional(p) else "")


def _provisional(r: KpiResult) -> str:
    """Why a period is not on or off track: most of its records are still open."""
    if r.status != "provisional" or r.open_share is None or r.period is None:
        return ""
    label = period_label(r.period, r.kpi.period.grain)
    return (
        f'<p class="provisional"><strong>Provisional:</strong> {fmt(r.open_share, 0)}\u00a0% of the '
        f"records of {_e(label)} are still open, so the value counts only those already done; it is "
        "not compared with the target until most of them are.</p>"
    )


def _trend_figure(r: KpiResult, chart_id: str) -> str:
    kpi = r.kpi
    grain = kpi.period.grain
    points = [
        LinePoint(period_label(p.period, grain), p.value, axis_label(p.period, grain))
        for p in r.series
    ]
    title = f"{kpi.title}: trend by {grain}"
    svg = line_chart(
        chart_id, title, points, kpi.unit, kpi.decimals, kpi.target.value if kpi.target else None
    )
    rows = [
        [
            _e(period_label(p.period, grain)),
            "suppressed" if p.suppressed else _e(_value_text(p.value, kpi.unit, kpi.decimals)),
            _e(_records(p.n, p.suppressed, r.min_records)),
        ]
        + ([_e(_open_text(r, p))] if kpi.still_open else [])
        for p in r.series
    ]
    headers = ["Period", "Value", "Records"] + (["Still open"] if kpi.still_open else [])
    table = _table(headers, rows, {1, 2, 3}, title)
    return f'<figure class="chart" data-chart="{chart_id}"><figcaption>Trend by {_e(grain)}</figcaption>{svg}<details><summary>Data table: trend</summary>{table}</details></figure>'


def _breakdown_figure(r: KpiResult, index: int, chart_id: str) -> str:
    kpi = r.kpi
    b = r.breakdowns[index]
    groups = b.groups
    charted = groups
    note = ""
    if b.max_bars is not None and len(groups) > b.max_bars:
        # Chart the groups served worst (furthest on the wrong side), the equity question.
        worst_first = not (kpi.target and kpi.target.direction == "higher_is_better")
        ranked = sorted(
            (g for g in groups if g.value is not None),
            key=lambda g: g.value or 0.0,
            reverse=worst_first,
        )
        charted = ranked[: b.max_bars]
        which = "highest" if worst_first else "lowest"
        note = f" (chart: the {b.max_bars} {which} of {len(groups)}; the table lists all)"
    bars = [Bar(g.label, g.value, "suppressed" if g.suppressed else "no data") for g in charted]
    label = period_label(b.period, kpi.period.grain)
    title = f"{kpi.title}: {b.title.lower()}, {label}"
    target = kpi.target.value if kpi.target else None
    lower = kpi.target.direction == "lower_is_better" if kpi.target else None
    svg = bar_chart(chart_id, title, bars, kpi.unit, kpi.decimals, target, lower)
    rows = [
        [
            _e(g.label),
            "suppressed" if g.suppressed else _e(_value_text(g.value, kpi.unit, kpi.decimals)),
            _e(_records(g.n, g.suppressed, r.min_records)),
        ]
        for g in groups
    ]
    table = _table(
        [b.title.removeprefix("By ").capitalize(), "Value", "Records"], rows, {1, 2}, title
    )
    equity = ' <span class="muted">(equity dimension)</span>' if b.equity else ""
    return (
        f'<figure class="chart" data-chart="{chart_id}"><figcaption>{_e(b.title)}, {_e(label)}{equity}{_e(note)}</figcaption>'
        f"{svg}<details><summary>Data table: {_e(b.title.lower())}</summary>{table}</details></figure>"
    )


def _kpi_card(r: KpiResult) -> str:
    kpi = r.kpi
    value = r.current.value if r.current and r.has_value else None
    target = ""
    if kpi.target:
        sign = "≤" if kpi.target.direction == "lower_is_better" else "≥"
        target = f'<p class="muted">Target: {sign} {_e(_value_text(kpi.target.value, kpi.unit, kpi.decimals))} — {_e(kpi.target.source)}</p>'
    period = f"{period_label(r.period, kpi.period.grain)}" if r.period else ""
    reason = (
        f'<p class="no_data"><strong>No data:</strong> {_e(r.reason)}</p>'
        if r.status == "no_data" and r.reason
        else ""
    )
    src = ""
    if r.source is not None:
        s = r.source
        src = (
            f'<p class="muted">Data behind it: <a href="{_e(s.portal_path)}">{_e(s.title)}</a> on the open data portal '
            f"(version {_e(s.version[:12])}, published {_e(_when(s.published_at))}, {s.rows:,} rows).</p>"
        )
    else:
        src = f'<p class="muted">Source dataset: {_e(kpi.dataset)} (not published).</p>'
    figures = ""
    if r.series:
        figs = [_trend_figure(r, f"{kpi.id}-trend")] + [
            _breakdown_figure(r, i, f"{kpi.id}-by-{b.column}") for i, b in enumerate(r.breakdowns)
        ]
        figures = f'<div class="charts">{"".join(figs)}</div>'
    return (
        f'<article class="kpi" id="{_e(kpi.id)}" data-kpi="{_e(kpi.id)}" data-status="{_e(r.status)}">'
        f'<div class="kpi-head"><h3>{_e(kpi.title)}</h3><span class="pill {_e(r.status)}">{_e(STATUS_TEXT[r.status])}</span></div>'
        f'<p><span class="value">{_e(_value_text(value, kpi.unit, kpi.decimals))}</span> <span class="muted">{_e(period)}</span></p>'
        f"{reason}{_provisional(r)}{target}<p>{_e(kpi.description)}</p>"
        f'<p class="muted">Owner: {_e(kpi.owner.name)}, {_e(kpi.department)}</p>{src}{figures}'
        f"<details><summary>How it is computed (SQL)</summary><pre><code>{_e(r.sql)}</code></pre></details></article>"
    )


def _progress_svg(cert: CertificationResult) -> str:
    """A bar of percent met with a tick at each level's threshold."""
    width, height, left, right = 400, 60, 8, 8
    span = width - left - right

    def x(pct: float) -> float:
        return left + span * pct / 100

    levels = ", ".join(f"{lv['name']} {lv['min_percent']:g} %" for lv in cert.levels)
    parts = [
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-labelledby="cert-progress-title" xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif" font-size="15">',
        f'<title id="cert-progress-title">{cert.percent:.0f} % of criteria met; levels at {_e(levels)}</title>',
        f'<rect x="{left}" y="8" width="{span}" height="16" rx="8" fill="#e6ebf0"/>',
        f'<rect x="{left}" y="8" width="{max(span * cert.percent / 100, 0):.1f}" height="16" rx="8" fill="#1d5fa8"/>',
    ]
    for lv in cert.levels:
        lx = x(lv["min_percent"])
        parts.append(
            f'<line x1="{lx:.1f}" x2="{lx:.1f}" y1="4" y2="28" stroke="#1b1f24" stroke-width="1.5"/>'
        )
        parts.append(
            f'<text x="{lx:.1f}" y="48" text-anchor="middle" fill="#1b1f24">{_e(lv["name"])}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _criterion_row(c: CriterionResult) -> list[str]:
    crit = c.criterion
    code = f"{crit.standard.code} ({crit.standard.edition})" if crit.standard else ""
    practice = _e(crit.practice + (f" — {crit.practice_area}" if crit.practice_area else ""))
    status = '<span class="met">Met</span>' if c.met else '<span class="unmet">Not met</span>'
    evidence = _e(c.evidence) + (
        f"<br><span class=muted>Missing: {_e(c.missing)}</span>" if c.missing else ""
    )
    return [practice, _e(code), _e(crit.text), _e(crit.assessment), status, evidence]


def _certification(cert: CertificationResult) -> str:
    met = sum(1 for c in cert.criteria if c.met)
    unit = "criteria" if cert.scoring == "counted" else "points of weight"
    next_text = "This is the highest level."
    missing = ""
    if cert.next_level:
        need = cert.points_to_next or 0
        next_text = f"{need:g} more {unit} must be met to reach {_e(cert.next_level)} ({cert.next_level_percent:g} %)."
        items = "".join(
            f"<li><strong>{_e(c.criterion.text)}</strong> <span class=muted>({_e(c.criterion.practice)})</span><br>{_e(c.missing or c.evidence)}</li>"
            for c in cert.missing_for_next
        )
        missing = (
            f'<h3>What is missing for {_e(cert.next_level)}</h3><ul class="missing">{items}</ul>'
        )
    rows = [_criterion_row(c) for c in cert.criteria]
    table = _table(
        ["Practice", "Standard code", "Criterion", "Assessed", "Result", "Evidence"],
        rows,
        set(),
        "Every criterion with its evidence",
    )
    return (
        f'<section id="certification" aria-labelledby="cert-h"><h2 id="cert-h">Certification</h2>'
        f'<div class="level"><div><div class="muted">Level</div><div class="level-name" data-level="{_e(cert.level)}">{_e(cert.level)}</div></div>'
        f'<div><div class="muted">Criteria met</div><div><strong>{met} of {len(cert.criteria)}</strong> ({cert.percent:.0f} %)</div></div>'
        f'<div class="progress">{_progress_svg(cert)}</div><p>{next_text}</p></div>'
        f'<p class="muted">Modelled on {_e(cert.standard)}; {_e(cert.scoring)} scoring.</p>'
        f"{missing}<details><summary>All {len(cert.criteria)} criteria with evidence</summary>{table}</details></section>"
    )


def _summary(results: list[KpiResult]) -> str:
    rows = []
    for r in results:
        kpi = r.kpi
        value = r.current.value if r.current and r.has_value else None
        target = ""
        if kpi.target:
            target = (
                "≤\u00a0" if kpi.target.direction == "lower_is_better" else "≥\u00a0"
            ) + _value_text(kpi.target.value, kpi.unit, kpi.decimals)
        rows.append(
            [
                f'<a href="#{_e(kpi.id)}">{_e(kpi.title)}</a>',
                _e(_value_text(value, kpi.unit, kpi.decimals)),
                _e(target),
                f'<span class="{_e(r.status)}">{_e(STATUS_TEXT[r.status])}</span>',
                _e(period_label(r.period, kpi.period.grain) if r.period else ""),
            ]
        )
    return _table(
        ["KPI", "Latest", "Target", "Status", "Period"], rows, {1}, "Every KPI at a glance"
    )


def _performance_link(card: Scorecard) -> str:
    # Only a published (validated and scanned) version is offered for download.
    return (
        '<a href="performance_metrics.csv">performance_metrics.csv</a>'
        if card.has_performance_csv
        else ""
    )


def render_page(card: Scorecard) -> str:
    generated = card.generated_at.strftime("%Y-%m-%d %H:%M UTC")
    on = sum(1 for r in card.results if r.status == "on_track")
    off = sum(1 for r in card.results if r.status == "off_track")
    nodata = sum(1 for r in card.results if r.status == "no_data")
    provisional = sum(1 for r in card.results if r.status == "provisional")
    cards = "".join(_kpi_card(r) for r in card.results)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Performance scorecard</title>
<link rel="icon" href="data:,">
<style>{STYLESHEET}</style>
</head>
<body>
<header>
<h1>Performance scorecard</h1>
<p class="muted">Computed {_e(generated)} from the data published on the open data portal and its run history. Nothing on this page is typed in by hand.</p>
<nav><a href="/">Open data portal</a><a href="scorecard.csv">scorecard.csv</a><a href="scorecard.json">scorecard.json</a>{_performance_link(card)}</nav>
</header>
<main>
{_certification(card.certification)}
<section id="kpis" aria-labelledby="kpis-h">
<h2 id="kpis-h">Key performance indicators</h2>
<p>{on} on track, {off} off track, {provisional} provisional (most records of the period still open), {nodata} with no data, of {len(card.results)}.</p>
{_summary(card.results)}
<div class="cards">{cards}</div>
</section>
</main>
<footer>
<p class="muted">Values computed from fewer than {card.small_count_threshold} records are suppressed to protect privacy (some KPIs about totals that are not about people set their own limit).
Each KPI is computed from the latest published version of its dataset; a KPI with no rows in its dataset's latest period shows "no data" instead of an older value.</p>
</footer>
</body>
</html>
"""
