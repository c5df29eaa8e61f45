"""The privacy report written next to the validation report for every run.

It says which rule touched which column and how many values it changed, what the scan
found (example row numbers with the values masked) and which findings a written
allowance in the spec lets through. It never holds a clear PII value or a secret.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from civicflow.privatefs import write_private

MAX_EXAMPLES = 5
#: the finding for values a rule cannot protect (negative ages); no pii_allow can let it through
INVALID_VALUE = "invalid_value"


@dataclass(frozen=True)
class RuleApplied:
    """One rule on one column."""

    column: str
    rule: str  # drop, hash, generalise, redact, suppress_small_counts
    reason: str
    values_changed: int  # for drop: values removed
    non_null: int
    method: str | None = None


@dataclass
class Finding:
    """What one detector found in one published column."""

    dataset: str
    column: str
    detector: str
    count: int  # rows with at least one finding
    example_rows: list[int]
    examples: list[str]  # masked, one per example row
    allowed: bool = False
    reason: str | None = None  # the allowance's reason when allowed

    def describe(self) -> str:
        """Column, detector, count and row numbers: public text (it becomes a ledger
        reason the scorecard shows), so no value, not even a masked one."""
        rows = ", ".join(str(r) for r in self.example_rows) + (
            ", …" if self.count > len(self.example_rows) else ""
        )
        return f"{self.column}: {self.detector} x{self.count:,} (rows {rows})"


@dataclass(frozen=True)
class Allowance:
    """A written exception in the spec: this column may carry what this detector finds."""

    column: str
    detector: str
    reason: str
    findings: int  # rows the allowance let through in this run


@dataclass
class PrivacyReport:
    dataset_id: str
    rows: int
    published_columns: list[str]
    rules: list[RuleApplied] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    allowances: list[Allowance] = field(default_factory=list)
    suppression_threshold: int | None = None
    #: every published location column with the finest location it gives, finest first
    finest_location: list[str] = field(default_factory=list)
    scan_seconds: float = 0.0
    generated_at: str = field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds")
    )

    @property
    def blocking(self) -> list[Finding]:
        return [f for f in self.findings if not f.allowed]

    @property
    def blocked(self) -> bool:
        return bool(self.blocking)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["blocked"] = self.blocked
        return data

    def write(self, path: Path) -> Path:
        """Write the report as JSON, private to the owner (it holds masked examples) and
        atomically (readers never see half a report)."""
        return write_private(path, json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")

    def summary(self) -> str:
        """One paragraph for logs and the run ledger, which the public scorecard shows:
        check names, columns, counts and row numbers only; examples stay in the report."""
        if self.blocked:
            invalid = any(f.detector == INVALID_VALUE for f in self.blocking)
            return (
                "BLOCKED: "
                + "; ".join(f.describe() for f in self.blocking)
                + ". Fix the spec (a rule for the column, or a pii_allow with a reason)"
                + (" or the invalid source values" if invalid else "")
                + " and run again; examples are in the privacy report."
            )
        touched = ", ".join(
            f"{r.column} {r.rule}{'/' + r.method if r.method else ''} ({r.values_changed:,} changed)"
            for r in self.rules
        )
        text = f"passed: {self.rows:,} rows, {len(self.published_columns)} columns scanned, no unallowed findings"
        if touched:
            text += f"; rules: {touched}"
        allowed = [
            f"{a.column}: {a.detector} x{a.findings:,}" for a in self.allowances if a.findings
        ]
        if allowed:
            text += f"; allowed by the spec: {', '.join(allowed)}"
        return text + "."

    def metadata_notes(self) -> dict[str, str]:
        """Per-column text for the published data dictionary: allowances and suppression.

        (The rule and its reason are already in the column description the pipeline builds.)
        """
        notes: dict[str, list[str]] = {}
        for a in self.allowances:
            notes.setdefault(a.column, []).append(
                f"Published with a privacy allowance for {a.detector.replace('_', ' ')}: {a.reason}"
            )
        for r in self.rules:
            if r.rule == "suppress_small_counts":
                notes.setdefault(r.column, []).append(
                    f"Counts from 1 to {int(self.suppression_threshold or 0) - 1} are suppressed (published empty) to protect privacy."
                )
        return {column: " ".join(texts) for column, texts in notes.items()}
