"""The private run report as a page a steward reads: every check with its failing values.

It is rendered from the JSON validation report (and the privacy report beside it) and
written next to them under ``var/reports/``, private (0600): unlike the ledger and the
scorecard it shows example values read from the source, which is the point of the page,
so it must never be published. Every value goes through ``html.escape`` (a source cell
may hold markup), and the page is self-contained: no script, no external asset.
"""

from __future__ import annotations

import json
import logging
from html import escape
from pathlib import Path
from typing import Any

from civicflow.privatefs import write_private

log = logging.getLogger("civicflow.quality.html")

PRIVATE_BANNER = "private: may show values from the data; never publish"
_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#111;background:#fff}"
    "table{border-collapse:collapse;margin:.5rem 0 1.5rem}"
    "th,td{border:1px solid #666;padding:.25rem .5rem;text-align:left;vertical-align:top}"
    ".banner{font-weight:bold;color:#8a1f11;border:2px solid #8a1f11;padding:.5rem}"
    "code{white-space:pre-wrap;word-break:break-all}"
    "h1,p,li{overflow-wrap:anywhere}.wide{overflow-x:auto}"
)


def _text(value: Any) -> str:
    """Any JSON value as escaped text (strings as they are, the rest as JSON)."""
    if value is None:
        return ""
    raw = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return escape(raw, quote=True)


def _table(caption: str, headers: list[str], rows: list[list[str]]) -> str:
    """A table whose cells are ALREADY escaped HTML; headers are escaped here."""
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    # the wrapper scrolls a wide table on its own on a narrow screen, not the whole page;
    # a named, focusable region so a keyboard user can scroll it too
    return (
        f'<div class="wide" role="region" tabindex="0" aria-label="{escape(caption)}"><table><caption>{escape(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )


def _verdict(report: dict[str, Any]) -> str:
    if "stage" in report:  # a run that stopped before or instead of the checks
        return f"stopped at {report['stage']}"
    if not report.get("passed"):
        return "rejected"
    return "passed with quarantined rows" if report.get("quarantined") else "passed"


def _summary(report: dict[str, Any]) -> str:
    rows = [
        ("Dataset", report.get("dataset_id")),
        ("Run", report.get("run_id")),
        ("Verdict", _verdict(report)),
        ("Rows", report.get("rows")),
        ("Suite", report.get("suite")),
        ("Quarantined rows", report.get("quarantined")),
        ("Quarantine file", report.get("quarantine_path")),
    ]
    body = "".join(
        f'<tr><th scope="row">{escape(k)}</th><td>{_text(v)}</td></tr>'
        for k, v in rows
        if v is not None
    )
    return f"<table><caption>Run</caption><tbody>{body}</tbody></table>"


def _examples(examples: list[dict[str, Any]]) -> str:
    """The private failing rows: row number and value, one line each."""
    items = "".join(
        f"<li>row {_text(e.get('row')) or '(header)'}: <code>{_text(e.get('value'))}</code></li>"
        for e in examples
    )
    return f"<ul>{items}</ul>" if items else ""


def _checks(checks: list[dict[str, Any]]) -> str:
    headers = ["Check", "Layer", "Severity", "Outcome", "Failing", "Columns", "Message", "Examples"]
    rows = [
        [
            _text(c.get("name")),
            _text(c.get("layer")),
            _text(c.get("severity")),
            _text(c.get("status")),
            _text(c.get("unexpected_count")),
            _text(", ".join(c.get("columns") or [])),
            _text(c.get("message")),
            _examples(c.get("examples") or []),
        ]
        for c in checks
    ]
    return "<h2>Checks</h2>" + _table(f"{len(checks)} checks", headers, rows)


def _error(report: dict[str, Any]) -> str:
    """An error report (the run stopped): the public reason and the private detail."""
    detail = report.get("detail")
    out = f"<h2>Why the run stopped</h2><p>{_text(report.get('error'))}</p>"
    if detail:
        out += f"<h3>Detail (private)</h3><pre><code>{_text(detail)}</code></pre>"
    return out


def _notes(notes: list[str]) -> str:
    if not notes:
        return ""
    return "<h2>Notes</h2><ul>" + "".join(f"<li>{_text(n)}</li>" for n in notes) + "</ul>"


def _privacy(privacy: dict[str, Any] | None) -> str:
    if privacy is None:
        return "<h2>Privacy</h2><p>No privacy report for this run.</p>"
    rules = _table(
        "Rules applied",
        ["Column", "Rule", "Method", "Values changed", "Reason"],
        [
            [_text(r.get(k)) for k in ("column", "rule", "method", "values_changed", "reason")]
            for r in privacy.get("rules") or []
        ],
    )
    findings = _table(
        "Scan findings",
        ["Column", "Detector", "Rows", "Allowed", "Example rows", "Masked examples"],
        [
            [_text(f.get(k)) for k in ("column", "detector", "count", "allowed", "example_rows")]
            + [_text(", ".join(f.get("examples") or []))]
            for f in privacy.get("findings") or []
        ],
    )
    state = "blocked" if privacy.get("blocked") else "not blocked"
    return f"<h2>Privacy</h2><p>Privacy scan: {state}.</p>{rules}{findings}"


def render_report_html(report: dict[str, Any], privacy: dict[str, Any] | None) -> str:
    """The whole page for one run's report dict (and its privacy report dict, if any)."""
    title = f"Run report: {report.get('dataset_id', '?')} {report.get('run_id', '?')}"
    body = (
        _checks(report.get("checks") or []) + _notes(report.get("notes") or [])
        if "stage" not in report
        else _error(report)
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{_text(title)}</title><style>{_STYLE}</style></head><body><main>"
        f'<p class="banner">{escape(PRIVATE_BANNER)}</p><h1>{_text(title)}</h1>'
        f"{_summary(report)}{body}{_privacy(privacy)}</main></body></html>\n"
    )


def privacy_path_for(json_path: Path) -> Path:
    """``<run-id>.privacy.json`` beside ``<run-id>.json``."""
    return json_path.with_name(json_path.stem + ".privacy.json")


def write_report_html(json_path: Path | str) -> Path:
    """Render ``<run-id>.json`` (and its privacy report) to ``<run-id>.html`` beside it, 0600."""
    json_path = Path(json_path)
    report = json.loads(json_path.read_text(encoding="utf-8"))
    privacy_path = privacy_path_for(json_path)
    privacy = (
        json.loads(privacy_path.read_text(encoding="utf-8")) if privacy_path.exists() else None
    )
    out = write_private(json_path.with_suffix(".html"), render_report_html(report, privacy))
    log.info("%s: run report page %s", report.get("dataset_id"), out)
    return out
