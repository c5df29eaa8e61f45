"""What an alert says: a subject, a plain-text body and a Slack-compatible JSON payload.

A message is built from public facts only: the spec (id, title, steward, frequency),
the ledger record (outcome, counts, the public reason, report paths) and the names,
columns and counts of the failed checks. It never reads a value from the source: the
private report's ``examples``, ``details`` and ``error`` entries are left unread, and
check columns are kept only when they are the spec's own field names.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from civicflow.alerts.state import Change, Transition
from civicflow.ledger import RunRecord
from civicflow.spec.models import DatasetSpec

log = logging.getLogger("civicflow.alerts")

MAX_CHECKS = 10  # a message names the first few failed checks; the report has all
MAX_REASON = 1500  # Slack sections hold 3,000 characters
_CHECK_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,80}$")
_HEADLINE: dict[Change, str] = {
    "failing": "is failing",
    "recovered": "recovered",
    "stale": "is stale",
    "fresh": "is fresh again",
}


@dataclass(frozen=True)
class FailedCheck:
    """A failed check, as public as the ledger reason: its name, columns and count."""

    name: str
    severity: str
    columns: tuple[str, ...]
    count: int

    def line(self) -> str:
        cols = f" on {', '.join(self.columns)}" if self.columns else ""
        rows = f": {self.count:,} failing" if self.count else ""
        return f"{self.severity} {self.name}{cols}{rows}"


def failed_checks(report_path: str | None, spec: DatasetSpec) -> list[FailedCheck]:
    """The failed checks listed in a run's private quality report (none if unreadable)."""
    if not report_path:
        return []
    try:
        body = json.loads(Path(report_path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.debug("%s: report not read for the alert (%s)", spec.id, type(exc).__name__)
        return []
    checks = body.get("checks") if isinstance(body, dict) else None
    if not isinstance(checks, list):
        return []  # an extract or schema rejection: the reason says it all
    fields = {f.name for f in spec.fields}
    out = []
    for check in checks:
        if not isinstance(check, dict) or check.get("status") != "failed":
            continue
        name = str(check.get("name", ""))
        columns = [c for c in check.get("columns") or [] if c in fields]
        count = check.get("unexpected_count")
        out.append(
            FailedCheck(
                name=name if _CHECK_NAME.match(name) else "unnamed check",
                severity="warning" if check.get("severity") == "warning" else "critical",
                columns=tuple(columns),
                count=count if isinstance(count, int) else 0,
            )
        )
    return out


@dataclass(frozen=True)
class Alert:
    """One message about one change of one dataset, rendered for every channel."""

    dataset_id: str
    change: Change
    subject: str
    headline: str
    facts: list[tuple[str, str]]
    checks: list[FailedCheck] = field(default_factory=list)
    report_path: str | None = None

    def text(self) -> str:
        """The e-mail body: headline, facts one per line, failed checks, the report."""
        width = max(len(label) for label, _ in self.facts) + 1
        lines = [self.headline, ""]
        for label, value in self.facts:
            pad = " " * (width + 1)
            lines.append(f"{label + ':':<{width}} " + value.replace("\n", "\n" + pad))
        if self.checks:
            lines += ["", "Failed checks:"]
            lines += [f"  - {c.line()}" for c in self.checks[:MAX_CHECKS]]
            if len(self.checks) > MAX_CHECKS:
                lines.append(f"  ... and {len(self.checks) - MAX_CHECKS} more in the report")
        lines += ["", *self._report_lines()]
        return "\n".join(lines).rstrip() + "\n"

    def _report_lines(self) -> list[str]:
        if not self.report_path:
            return [
                "`civicflow status` and `civicflow runs` show every dataset's state and history."
            ]
        return [
            f"The run's report is on the civicflow host at {self.report_path}.",
            "It is private (it may show example values from the source): read it there,",
            "do not forward it. `civicflow runs` shows the history.",
        ]

    def slack(self) -> dict[str, Any]:
        """Slack-compatible JSON (also fine for Teams/Mattermost incoming webhooks)."""
        facts = "\n".join(f"*{_esc(label)}:* {_esc(value)}" for label, value in self.facts)
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": self.subject[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": _esc(self.headline)[:3000]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": facts[:3000]}},
        ]
        if self.checks:
            listed = "\n".join(f"• {_esc(c.line())}" for c in self.checks[:MAX_CHECKS])
            blocks.append(
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": f"*Failed checks*\n{listed}"},
                }
            )
        context = " ".join(self._report_lines())
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _esc(context)}]})
        return {"text": f"{self.subject}\n{self.headline}", "blocks": blocks}


def describe_age(age: timedelta | None) -> str:
    """A data age in words for ``notify_freshness``: "9 days", "5 hours", "unknown"."""
    if age is None:
        return "unknown"
    hours = int(age.total_seconds() // 3600)
    if hours < 48:
        return f"{hours} hour{'s' if hours != 1 else ''}"
    days = hours // 24
    return f"{days:,} days"


def _esc(text: str) -> str:
    """Slack mrkdwn control characters, escaped as Slack asks."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _subject(spec: DatasetSpec, change: Change, detail: str = "") -> str:
    return f"[civicflow] {spec.id} {_HEADLINE[change]}{detail}"


def _dataset_facts(spec: DatasetSpec) -> list[tuple[str, str]]:
    return [("Dataset", f"{spec.title} ({spec.id})")]


def _run_facts(record: RunRecord) -> list[tuple[str, str]]:
    checks = (
        f"critical {record.critical_failed} failed, {record.critical_passed} passed; "
        f"warnings {record.warning_failed} failed, {record.warning_passed} passed"
    )
    facts = [
        ("Run", f"{record.run_id}, {record.outcome} at {_when(record.finished_at)}"),
        ("Reason", record.reason[:MAX_REASON]),
    ]
    if record.rows_in is not None:
        facts.append(("Rows read", f"{record.rows_in:,}"))
    if record.critical_passed or record.critical_failed or record.warning_failed:
        facts.append(("Checks", checks))
    if record.privacy_findings:
        facts.append(("Privacy findings", f"{record.privacy_findings:,}"))
    if record.privacy_report_path:
        facts.append(("Privacy report", record.privacy_report_path))
    return facts


def run_alert(
    spec: DatasetSpec,
    moved: Transition,
    record: RunRecord,
    failing_since: datetime | None = None,
    failed_runs: int = 0,
) -> Alert:
    """The message for a run that changed the dataset's state (failing or recovered)."""
    if moved.change == "failing":
        headline = (
            f"{spec.title} ({spec.id}) is failing: run {record.run_id} ended {record.outcome}, "
            "so nothing was published: the portal still serves what it served before."
        )
        subject = _subject(spec, "failing", f" (run {record.outcome})")
        change = "was publishing, now failing"
    else:
        streak = f" after {failed_runs} failing run{'s' if failed_runs != 1 else ''}"
        since = f" since {_when(failing_since)}" if failing_since else ""
        headline = (
            f"{spec.title} ({spec.id}) recovered{streak if failed_runs else ''}{since}: "
            f"run {record.run_id} ended {record.outcome}."
        )
        subject = _subject(spec, "recovered")
        change = "was failing, now publishing again"
        if record.portal_version:
            change += f" (portal version {record.portal_version})"
    facts = [*_dataset_facts(spec), ("What changed", change), *_run_facts(record)]
    facts.append(("Steward", f"{spec.steward.name} <{spec.steward.email}>"))
    checks = failed_checks(record.report_path, spec) if moved.change == "failing" else []
    return Alert(spec.id, moved.change, subject, headline, facts, checks, record.report_path)


def freshness_alert(spec: DatasetSpec, moved: Transition, age: str) -> Alert:
    """The message for a dataset that went stale, or is fresh again."""
    frequency = str(spec.update_frequency)
    if moved.change == "stale":
        headline = (
            f"{spec.title} ({spec.id}) is stale: its data is {age} old, older than its "
            f"declared {frequency} update frequency allows."
        )
        change = "was fresh, now stale"
    else:
        headline = f"{spec.title} ({spec.id}) is fresh again: its data is {age} old."
        change = "was stale, now fresh"
    facts = [
        *_dataset_facts(spec),
        ("What changed", change),
        ("Data age", age),
        ("Update frequency", frequency),
        ("Steward", f"{spec.steward.name} <{spec.steward.email}>"),
    ]
    return Alert(spec.id, moved.change, _subject(spec, moved.change), headline, facts)
