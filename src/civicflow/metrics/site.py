"""The leadership page: certification level, then every KPI with its charts and tables.

One static HTML file per language (``index.html`` in English, ``index.es.html`` in
Spanish, side by side), with its stylesheet and SVG inline: no script, no web font, no
other request at all, so it works wherever it is served (with or without a trailing
slash) and from disk. Each page names its language (``<html lang>``) and links to the
other (``hreflang``). Each chart is a ``<figure class="chart">`` holding the SVG and a
``<table>`` with the same numbers, for screen readers and for copying.

Interface strings are ``tr._()`` calls (the ``scorecard`` gettext domain, see
``metrics.i18n``); KPI and criterion text comes from ``metrics/`` with its ``*_es``
fields, English (marked ``lang="en"``, with a note) where one is missing. Reasons and
evidence details written by the checks are English and marked so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from html import escape

from civicflow.metrics.card import Scorecard
from civicflow.metrics.certification import CertificationResult, CriterionResult
from civicflow.metrics.charts import Bar, LinePoint, bar_chart, line_chart
from civicflow.metrics.compute import KpiResult, Point
from civicflow.metrics.i18n import LANGUAGES, N_, NAMES, NOT_YET_CERTIFIED, PAGES, Tr
from civicflow.metrics.models import Kpi

STATUS_TEXT = {
    "on_track": N_("On track"),
    "off_track": N_("Off track"),
    "no_target": N_("No target set"),
    "provisional": N_("Provisional"),
    "no_data": N_("No data"),
}
ASSESSMENT_TEXT = {"auto": N_("auto"), "attested": N_("attested")}
#: the bundled levels (metrics/certification.yaml, What Works Cities); other names can
#: carry their own ``name_es``
LEVEL_NAMES = (N_("Silver"), N_("Gold"), N_("Platinum"), NOT_YET_CERTIFIED)

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
.languages ul { list-style: none; margin: 0 0 .5rem; padding: 0; display: flex; flex-wrap: wrap; justify-content: flex-end; gap: .25rem 1rem; }
.languages a { margin-right: 0; }
.languages [aria-current] { font-weight: 600; }
.note { color: var(--muted); font-size: .9rem; font-style: italic; margin: .25rem 0; }
"""


@dataclass(frozen=True)
class PageText:
    """Text for the other languages that a scorecard result does not carry: dataset titles
    from the catalog (``title_es``) and ``certification.yaml``'s own ``standard_es`` /
    ``below_levels_es``. Empty: every such text is shown in English."""

    dataset_titles_es: Mapping[str, str] = field(default_factory=dict)
    standard_es: str | None = None
    below_levels_es: str | None = None


ENGLISH = Tr()
NO_TEXT = PageText()


def _e(value: object) -> str:
    return escape(str(value))


def _fill(template: str, **html: str) -> str:
    """A translated sentence with HTML put in its placeholders (the sentence is escaped,
    each value must be escaped HTML already)."""
    return _e(template) % html


def _lang(tr: Tr, text_lang: str) -> str:
    """The ``lang`` attribute of text not in the page's language."""
    return f' lang="{text_lang}"' if text_lang != tr.lang else ""


def _span(tr: Tr, text: str, text_lang: str) -> str:
    attr = _lang(tr, text_lang)
    return f"<span{attr}>{_e(text)}</span>" if attr else _e(text)


def _english(tr: Tr, text: str) -> str:
    """Text written by the checks (reasons, evidence details): English, marked so."""
    return _span(tr, text, "en")


def _fallback_note(tr: Tr) -> str:
    return f'<p class="note">{_e(tr._("Available in English only"))}</p>'


def _unit(kpi: Kpi, tr: Tr) -> str:
    return tr.pick(kpi.unit, kpi.unit_es)[0]


def _value_text(value: float | None, unit: str, decimals: int, tr: Tr) -> str:
    if value is None:
        return "—"
    number = tr.number(value, decimals)
    # non-breaking spaces keep "95.0 %" and "2.8 days" on one line in narrow tables
    return f"{number}\u00a0%" if unit == "%" else f"{number}\u00a0{unit}"


def _pct(value: float, tr: Tr, decimals: int | None = None) -> str:
    """A percentage in running text: 51 %, 38 % (decimals None: as few as needed)."""
    if tr.english:
        return (f"{value:g}" if decimals is None else f"{value:.{decimals}f}") + " %"
    shown = tr.number(value, decimals) if decimals is not None else _short(value, tr)
    return f"{shown}\u00a0%"


def _short(value: float, tr: Tr) -> str:
    """A number with only the decimals it has (up to 2): 51, 51.5."""
    rounded = round(value, 2)
    decimals = next(d for d in (0, 1, 2) if round(rounded, d) == rounded)
    return tr.number(rounded, decimals)


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


def _records(n: int, suppressed: bool, min_records: int, tr: Tr) -> str:
    if suppressed:
        return tr._("fewer than %(n)s") % {"n": tr.integer(min_records)}
    return tr.integer(n)


def _open_text(r: KpiResult, p: Point, tr: Tr) -> str:
    if p.open_share is None:
        return ""
    share = f"{tr.number(p.open_share, 0)}\u00a0%"
    return tr._("%(share)s (provisional)") % {"share": share} if r.is_provisional(p) else share


def _provisional(r: KpiResult, tr: Tr) -> str:
    """Why a period is not on or off track: most of its records are still open."""
    if r.status != "provisional" or r.open_share is None or r.period is None:
        return ""
    text = tr._(
        "%(share)s of the records of %(period)s are still open, so the value counts only those already done; it is not compared with the target until most of them are."
    ) % {
        "share": f"{tr.number(r.open_share, 0)}\u00a0%",
        "period": tr.period(r.period, r.kpi.period.grain),
    }
    return f'<p class="provisional"><strong>{_e(tr._("Provisional:"))}</strong> {_e(text)}</p>'


def _kpi_title(kpi: Kpi, tr: Tr) -> tuple[str, str]:
    return tr.pick(kpi.title, kpi.title_es)


def _trend_figure(r: KpiResult, chart_id: str, tr: Tr) -> str:
    kpi = r.kpi
    grain = kpi.period.grain
    unit = _unit(kpi, tr)
    points = [
        LinePoint(tr.period(p.period, grain), p.value, tr.axis(p.period, grain)) for p in r.series
    ]
    title = tr._("%(kpi)s: trend by %(grain)s") % {
        "kpi": _kpi_title(kpi, tr)[0],
        "grain": tr.grain(grain),
    }
    svg = line_chart(
        chart_id, title, points, unit, kpi.decimals, kpi.target.value if kpi.target else None, tr
    )
    suppressed = _e(tr._("suppressed"))
    rows = [
        [
            _e(tr.period(p.period, grain)),
            suppressed if p.suppressed else _e(_value_text(p.value, unit, kpi.decimals, tr)),
            _e(_records(p.n, p.suppressed, r.min_records, tr)),
        ]
        + ([_e(_open_text(r, p, tr))] if kpi.still_open else [])
        for p in r.series
    ]
    headers = [tr._("Period"), tr._("Value"), tr._("Records")] + (
        [tr._("Still open")] if kpi.still_open else []
    )
    table = _table(headers, rows, {1, 2, 3}, title)
    caption = tr._("Trend by %(grain)s") % {"grain": tr.grain(grain)}
    summary = tr._("Data table: trend")
    return f'<figure class="chart" data-chart="{chart_id}"><figcaption>{_e(caption)}</figcaption>{svg}<details><summary>{_e(summary)}</summary>{table}</details></figure>'


def _group_header(title: str) -> str:
    """'By council district' -> 'Council district' (Spanish 'Por ...' too)."""
    for prefix in ("By ", "Por "):
        title = title.removeprefix(prefix)
    return title.capitalize()


def _breakdown_figure(r: KpiResult, index: int, chart_id: str, tr: Tr) -> str:
    kpi = r.kpi
    b = r.breakdowns[index]
    dimension = next((d for d in kpi.dimensions if d.column == b.column), None)
    b_title, b_lang = tr.pick(b.title, dimension.title_es if dimension else None)
    unit = _unit(kpi, tr)
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
        which = (
            tr._("(chart: the %(n)s highest of %(total)s; the table lists all)")
            if worst_first
            else tr._("(chart: the %(n)s lowest of %(total)s; the table lists all)")
        )
        note = " " + which % {"n": tr.integer(b.max_bars), "total": tr.integer(len(groups))}
    suppressed, no_data = tr._("suppressed"), tr._("no data")
    bars = [Bar(g.label, g.value, suppressed if g.suppressed else no_data) for g in charted]
    label = tr.period(b.period, kpi.period.grain)
    title = f"{_kpi_title(kpi, tr)[0]}: {b_title.lower()}, {label}"
    target = kpi.target.value if kpi.target else None
    lower = kpi.target.direction == "lower_is_better" if kpi.target else None
    svg = bar_chart(chart_id, title, bars, unit, kpi.decimals, target, lower, tr)
    rows = [
        [
            # group names are data (district codes, council and request type names)
            _span(tr, g.label, "en"),
            _e(suppressed) if g.suppressed else _e(_value_text(g.value, unit, kpi.decimals, tr)),
            _e(_records(g.n, g.suppressed, r.min_records, tr)),
        ]
        for g in groups
    ]
    table = _table([_group_header(b_title), tr._("Value"), tr._("Records")], rows, {1, 2}, title)
    equity = f' <span class="muted">{_e(tr._("(equity dimension)"))}</span>' if b.equity else ""
    summary = tr._("Data table: %(breakdown)s") % {"breakdown": b_title.lower()}
    return (
        f'<figure class="chart" data-chart="{chart_id}"><figcaption>{_span(tr, b_title, b_lang)}, {_e(label)}{equity}{_e(note)}</figcaption>'
        f"{svg}<details><summary>{_e(summary)}</summary>{table}</details></figure>"
    )


def _source(r: KpiResult, tr: Tr, text: PageText) -> str:
    kpi = r.kpi
    if r.source is None:
        sentence = tr._("Source dataset: %(dataset)s (not published).")
        return f'<p class="muted">{_fill(sentence, dataset=_e(kpi.dataset))}</p>'
    s = r.source
    title, title_lang = tr.pick(s.title, text.dataset_titles_es.get(s.dataset_id))
    link = f'<a href="{_e(s.portal_path)}"{_lang(tr, title_lang)}>{_e(title)}</a>'
    sentence = tr._(
        "Data behind it: %(dataset)s on the open data portal (version %(version)s, published %(published)s, %(rows)s rows)."
    )
    return (
        '<p class="muted">'
        + _fill(
            sentence,
            dataset=link,
            version=_e(s.version[:12]),
            published=_e(tr.when_iso(s.published_at)),
            rows=_e(tr.integer(s.rows)),
        )
        + "</p>"
    )


def _kpi_card(r: KpiResult, tr: Tr = ENGLISH, text: PageText = NO_TEXT) -> str:
    kpi = r.kpi
    unit = _unit(kpi, tr)
    title, title_lang = _kpi_title(kpi, tr)
    description, description_lang = tr.pick(kpi.description, kpi.description_es)
    note = "" if tr.english or (kpi.title_es and kpi.description_es) else _fallback_note(tr)
    value = r.current.value if r.current and r.has_value else None
    target = ""
    if kpi.target:
        sign = "≤" if kpi.target.direction == "lower_is_better" else "≥"
        source, source_lang = tr.pick(kpi.target.source, kpi.target.source_es)
        target = (
            f'<p class="muted">{_e(tr._("Target:"))} {sign} {_e(_value_text(kpi.target.value, unit, kpi.decimals, tr))}'
            f" — {_span(tr, source, source_lang)}</p>"
        )
    period = tr.period(r.period, kpi.period.grain) if r.period else ""
    reason = (
        f'<p class="no_data"><strong>{_e(tr._("No data:"))}</strong> {_english(tr, r.reason)}</p>'
        if r.status == "no_data" and r.reason
        else ""
    )
    figures = ""
    if r.series:
        figs = [_trend_figure(r, f"{kpi.id}-trend", tr)] + [
            _breakdown_figure(r, i, f"{kpi.id}-by-{b.column}", tr)
            for i, b in enumerate(r.breakdowns)
        ]
        figures = f'<div class="charts">{"".join(figs)}</div>'
    owner = _fill(
        tr._("Owner: %(owner)s, %(department)s"),
        owner=_english(tr, kpi.owner.name),
        department=_english(tr, kpi.department),
    )
    return (
        f'<article class="kpi" id="{_e(kpi.id)}" data-kpi="{_e(kpi.id)}" data-status="{_e(r.status)}">'
        f'<div class="kpi-head"><h3{_lang(tr, title_lang)}>{_e(title)}</h3><span class="pill {_e(r.status)}">{_e(tr._(STATUS_TEXT[r.status]))}</span></div>'
        f'{note}<p><span class="value">{_e(_value_text(value, unit, kpi.decimals, tr))}</span> <span class="muted">{_e(period)}</span></p>'
        f"{reason}{_provisional(r, tr)}{target}<p{_lang(tr, description_lang)}>{_e(description)}</p>"
        f'<p class="muted">{owner}</p>{_source(r, tr, text)}{figures}'
        f"<details><summary>{_e(tr._('How it is computed (SQL)'))}</summary><pre><code>{_e(r.sql)}</code></pre></details></article>"
    )


def _level_name(name: str | None, cert: CertificationResult, tr: Tr, text: PageText) -> str:
    """A level's name in the page's language: certification.yaml's ``name_es`` (or
    ``below_levels_es``), else the scorecard's own translation of the name (the bundled
    level names, "Not yet certified"), else the name as written."""
    if name is None or tr.english:
        return name or ""
    for lv in cert.levels:
        if lv.get("name") == name:
            return str(lv.get("name_es") or tr._(name))
    return text.below_levels_es or tr._(name)


def _progress_svg(cert: CertificationResult, tr: Tr, text: PageText) -> str:
    """A bar of percent met with a tick at each level's threshold."""
    width, height, left, right = 400, 60, 8, 8
    span = width - left - right

    def x(pct: float) -> float:
        return left + span * pct / 100

    levels = ", ".join(
        f"{_level_name(lv['name'], cert, tr, text)} {_pct(lv['min_percent'], tr)}"
        for lv in cert.levels
    )
    title = tr._("%(percent)s of criteria met; levels at %(levels)s") % {
        "percent": _pct(cert.percent, tr, 0),
        "levels": levels,
    }
    parts = [
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-labelledby="cert-progress-title" xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif" font-size="15">',
        f'<title id="cert-progress-title">{_e(title)}</title>',
        f'<rect x="{left}" y="8" width="{span}" height="16" rx="8" fill="#e6ebf0"/>',
        f'<rect x="{left}" y="8" width="{max(span * cert.percent / 100, 0):.1f}" height="16" rx="8" fill="#1d5fa8"/>',
    ]
    for lv in cert.levels:
        lx = x(lv["min_percent"])
        parts.append(
            f'<line x1="{lx:.1f}" x2="{lx:.1f}" y1="4" y2="28" stroke="#1b1f24" stroke-width="1.5"/>'
        )
        parts.append(
            f'<text x="{lx:.1f}" y="48" text-anchor="middle" fill="#1b1f24">{_e(_level_name(lv["name"], cert, tr, text))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _evidence(c: CriterionResult, tr: Tr) -> str:
    """What the criterion was judged on. An automatic check's count is said in the page's
    language; the rest (attestations, notes) is the checks' English."""
    auto = c.criterion.auto
    if tr.english or auto is None or not c.items or c.share is None:
        return _english(tr, c.evidence)
    passed = sum(1 for i in c.items if i.ok)
    return _e(
        tr._("%(passed)s of %(total)s pass (%(share)s; needs %(needed)s)")
        % {
            "passed": tr.integer(passed),
            "total": tr.integer(len(c.items)),
            "share": _pct(c.share, tr, 0),
            "needed": _pct(auto.min_share, tr),
        }
    )


def _criterion_text(c: CriterionResult, tr: Tr) -> str:
    text, text_lang = tr.pick(c.criterion.text, c.criterion.text_es)
    return _span(tr, text, text_lang)


def _practice(c: CriterionResult, tr: Tr) -> str:
    crit = c.criterion
    practice = _span(tr, *tr.pick(crit.practice, crit.practice_es))
    if crit.practice_area:
        practice += " — " + _span(tr, *tr.pick(crit.practice_area, crit.practice_area_es))
    return practice


def _criterion_row(c: CriterionResult, tr: Tr) -> list[str]:
    crit = c.criterion
    code = f"{crit.standard.code} ({crit.standard.edition})" if crit.standard else ""
    status = (
        f'<span class="met">{_e(tr._("Met"))}</span>'
        if c.met
        else f'<span class="unmet">{_e(tr._("Not met"))}</span>'
    )
    evidence = _evidence(c, tr)
    if c.missing:
        missing = _fill(tr._("Missing: %(missing)s"), missing=_english(tr, c.missing))
        evidence += f"<br><span class=muted>{missing}</span>"
    return [
        _practice(c, tr),
        _e(code),
        _criterion_text(c, tr),
        _e(tr._(ASSESSMENT_TEXT.get(crit.assessment, crit.assessment))),
        status,
        evidence,
    ]


def _certification(cert: CertificationResult, tr: Tr = ENGLISH, text: PageText = NO_TEXT) -> str:
    met = sum(1 for c in cert.criteria if c.met)
    next_text = tr._("This is the highest level.")
    missing = ""
    if cert.next_level:
        need = cert.points_to_next or 0
        sentence = (
            tr._("%(n)s more criteria must be met to reach %(level)s (%(percent)s).")
            if cert.scoring == "counted"
            else tr._("%(n)s more points of weight must be met to reach %(level)s (%(percent)s).")
        )
        next_level = _level_name(cert.next_level, cert, tr, text)
        next_text = sentence % {
            "n": _short(need, tr) if not tr.english else f"{need:g}",
            "level": next_level,
            "percent": _pct(cert.next_level_percent or 0, tr),
        }
        items = "".join(
            f"<li><strong>{_criterion_text(c, tr)}</strong> <span class=muted>({_span(tr, *tr.pick(c.criterion.practice, c.criterion.practice_es))})</span><br>{_english(tr, c.missing or c.evidence)}</li>"
            for c in cert.missing_for_next
        )
        heading = tr._("What is missing for %(level)s") % {"level": next_level}
        missing = f'<h3>{_e(heading)}</h3><ul class="missing">{items}</ul>'
    rows = [_criterion_row(c, tr) for c in cert.criteria]
    headers = [
        tr._("Practice"),
        tr._("Standard code"),
        tr._("Criterion"),
        tr._("Assessed"),
        tr._("Result"),
        tr._("Evidence"),
    ]
    table = _table(headers, rows, set(), tr._("Every criterion with its evidence"))
    level = _level_name(cert.level, cert, tr, text)
    standard, standard_lang = tr.pick(cert.standard, text.standard_es)
    modelled = _fill(
        tr._("Modelled on %(standard)s; counted scoring.")
        if cert.scoring == "counted"
        else tr._("Modelled on %(standard)s; weighted scoring."),
        standard=_span(tr, standard, standard_lang),
    )
    of = tr._("%(met)s of %(total)s") % {
        "met": tr.integer(met),
        "total": tr.integer(len(cert.criteria)),
    }
    summary = tr._("All %(n)s criteria with evidence") % {"n": tr.integer(len(cert.criteria))}
    return (
        f'<section id="certification" aria-labelledby="cert-h"><h2 id="cert-h">{_e(tr._("Certification"))}</h2>'
        f'<div class="level"><div><div class="muted">{_e(tr._("Level"))}</div><div class="level-name" data-level="{_e(cert.level)}">{_e(level)}</div></div>'
        f'<div><div class="muted">{_e(tr._("Criteria met"))}</div><div><strong>{_e(of)}</strong> ({_e(_pct(cert.percent, tr, 0))})</div></div>'
        f'<div class="progress">{_progress_svg(cert, tr, text)}</div><p>{_e(next_text)}</p></div>'
        f'<p class="muted">{modelled}</p>'
        f"{missing}<details><summary>{_e(summary)}</summary>{table}</details></section>"
    )


def _summary(results: list[KpiResult], tr: Tr = ENGLISH) -> str:
    rows = []
    for r in results:
        kpi = r.kpi
        unit = _unit(kpi, tr)
        title, title_lang = _kpi_title(kpi, tr)
        value = r.current.value if r.current and r.has_value else None
        target = ""
        if kpi.target:
            target = (
                "≤\u00a0" if kpi.target.direction == "lower_is_better" else "≥\u00a0"
            ) + _value_text(kpi.target.value, unit, kpi.decimals, tr)
        rows.append(
            [
                f'<a href="#{_e(kpi.id)}"{_lang(tr, title_lang)}>{_e(title)}</a>',
                _e(_value_text(value, unit, kpi.decimals, tr)),
                _e(target),
                f'<span class="{_e(r.status)}">{_e(tr._(STATUS_TEXT[r.status]))}</span>',
                _e(tr.period(r.period, kpi.period.grain) if r.period else ""),
            ]
        )
    headers = [tr._("KPI"), tr._("Latest"), tr._("Target"), tr._("Status"), tr._("Period")]
    return _table(headers, rows, {1}, tr._("Every KPI at a glance"))


def _performance_link(card: Scorecard) -> str:
    # Only a published (validated and scanned) version is offered for download.
    return (
        '<a href="performance_metrics.csv">performance_metrics.csv</a>'
        if card.has_performance_csv
        else ""
    )


def _languages(tr: Tr) -> str:
    """The switch: this page's language named, the other a link to its page."""
    items = []
    for code in LANGUAGES:
        if code == tr.lang:
            items.append(
                f'<li><span lang="{code}" aria-current="true">{_e(NAMES[code])}</span></li>'
            )
        else:
            items.append(
                f'<li><a href="{PAGES[code]}" lang="{code}" hreflang="{code}">{_e(NAMES[code])}</a></li>'
            )
    return f'<nav class="languages" aria-label="{_e(tr._("Language"))}"><ul>{"".join(items)}</ul></nav>'


def _alternates() -> str:
    return "".join(
        f'<link rel="alternate" hreflang="{code}" href="{PAGES[code]}">' for code in LANGUAGES
    )


def render_page(card: Scorecard, lang: str = "en", text: PageText | None = None) -> str:
    """The page in ``lang`` (``en`` or ``es``)."""
    tr = Tr(lang if lang in LANGUAGES else "en")
    text = text or NO_TEXT
    generated = tr.when(card.generated_at)
    counts = {
        status: sum(1 for r in card.results if r.status == status)
        for status in ("on_track", "off_track", "no_data", "provisional")
    }
    cards = "".join(_kpi_card(r, tr, text) for r in card.results)
    portal = "/" if tr.english else f"/?lang={tr.lang}"
    title = tr._("Performance scorecard")
    computed = tr._(
        "Computed %(when)s from the data published on the open data portal and its run history. Nothing on this page is typed in by hand."
    ) % {"when": generated}
    tally = tr._(
        "%(on)s on track, %(off)s off track, %(provisional)s provisional (most records of the period still open), %(nodata)s with no data, of %(total)s."
    ) % {
        "on": tr.integer(counts["on_track"]),
        "off": tr.integer(counts["off_track"]),
        "provisional": tr.integer(counts["provisional"]),
        "nodata": tr.integer(counts["no_data"]),
        "total": tr.integer(len(card.results)),
    }
    suppression = tr._(
        "Values computed from fewer than %(n)s records are suppressed to protect privacy (some KPIs about totals that are not about people set their own limit)."
    ) % {"n": tr.integer(card.small_count_threshold)}
    latest = tr._(
        "Each KPI is computed from the latest published version of its dataset; a KPI with no rows in its dataset's latest period shows “no data” instead of an older value."
    )
    english_note = (
        ""
        if tr.english
        else f'\n<p class="muted">{_e(tr._("Reasons and evidence details written by the checks are in English."))}</p>'
    )
    return f"""<!doctype html>
<html lang="{tr.lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<link rel="icon" href="data:,">
{_alternates()}
<style>{STYLESHEET}</style>
</head>
<body>
<header>
{_languages(tr)}
<h1>{_e(title)}</h1>
<p class="muted">{_e(computed)}</p>
<nav aria-label="{_e(tr._("Portal and downloads"))}"><a href="{portal}">{_e(tr._("Open data portal"))}</a><a href="scorecard.csv">scorecard.csv</a><a href="scorecard.json">scorecard.json</a>{_performance_link(card)}</nav>
</header>
<main>
{_certification(card.certification, tr, text)}
<section id="kpis" aria-labelledby="kpis-h">
<h2 id="kpis-h">{_e(tr._("Key performance indicators"))}</h2>
<p>{_e(tally)}</p>
{_summary(card.results, tr)}
<div class="cards">{cards}</div>
</section>
</main>
<footer>
<p class="muted">{_e(suppression)}
{_e(latest)}</p>{english_note}
</footer>
</body>
</html>
"""
