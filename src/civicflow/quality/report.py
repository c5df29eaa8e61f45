"""The quality report: every check run on one extract, and whether it may be published."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from civicflow.privatefs import write_private

Layer = Literal["structure", "content"]
Severity = Literal["critical", "warning"]
Status = Literal["passed", "failed", "skipped"]
SEVERITIES: tuple[Severity, ...] = ("critical", "warning")
MAX_EXAMPLES = 20
#: Check fields kept in memory only, never written to a report
_IN_MEMORY = frozenset({"rows", "what"})


def json_safe(value: Any) -> Any:
    """A value as plain JSON: missing -> None, timestamps -> ISO text, numpy -> Python."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (str, bool)):
        return value
    if isinstance(value, (np.datetime64, np.timedelta64)):
        value = pd.Timestamp(value) if isinstance(value, np.datetime64) else pd.Timedelta(value)
        return None if pd.isna(value) else value.isoformat()
    if isinstance(value, (datetime, date, time, pd.Timedelta)):
        return value.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float):
        # NaN is "missing" in pandas float columns; infinities are not valid JSON.
        return None if math.isnan(value) else (value if math.isfinite(value) else str(value))
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, np.ndarray)):
        return [json_safe(v) for v in value]
    return str(value)


def describe_rows(examples: list[dict[str, Any]], count: int, limit: int = 5) -> str:
    """``rows 3, 5 and 9`` from the examples' row numbers only (never their values).

    ``count`` is how many rows failed in all, so a cut list ends in ", ...".
    """
    rows = [int(e["row"]) for e in examples if isinstance(e.get("row"), int)]
    if not rows:
        return ""
    # no thousands separators: in a comma-separated list "1,014" would read as two rows
    shown = [str(r) for r in rows[:limit]]
    if len(shown) == 1 and count <= 1:
        return f"row {shown[0]}"
    if count > len(shown):
        return "rows " + ", ".join(shown) + ", ..."
    return "rows " + (", ".join(shown[:-1]) + " and " + shown[-1] if len(shown) > 1 else shown[0])


@dataclass
class Check:
    """One check run on one extract (a structure rule or a GX expectation).

    ``message`` is public: it becomes the ledger reason that the scorecard page and
    ``scorecard.json`` show, so it names counts, spec constraints and row numbers only,
    never a value read from the source. Source values belong in ``examples`` and
    ``details``, which only the private report under ``var/reports/`` holds.
    """

    layer: Layer
    name: str
    columns: list[str]
    severity: Severity
    status: Status
    unexpected_count: int = 0
    #: private: up to 20 failing rows, ``{"row": 1-based data row (None for header checks), "value": ...}``
    examples: list[dict[str, Any]] = field(default_factory=list)
    #: public: what failed, with counts and row numbers (no source values)
    message: str = ""
    #: private: check-specific facts (the constraint and its value, GX kwargs, observed values)
    details: dict[str, Any] = field(default_factory=dict)
    #: in memory only, never written: the row number of EVERY failing row of a row-level
    #: check (quarantine holds them back); None for table-level checks (row count,
    #: column set, aggregates), whose failure no row can be blamed for, and for GX
    #: checks run without ``all_rows`` (a spec that does not quarantine)
    rows: np.ndarray | None = field(default=None, repr=False, compare=False)
    #: in memory only, never written: what a cell check's message says of its values
    #: after the count ("do not parse as integer"), so batch results re-count one check
    #: (``cell_message``); empty for other checks
    what: str = field(default="", repr=False, compare=False)

    @property
    def success(self) -> bool:
        return self.status == "passed"

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def row_level(self) -> bool:
        return self.rows is not None

    def to_dict(self) -> dict[str, Any]:
        # ``rows`` stays out: a report is read by people, the examples say enough
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _IN_MEMORY}
        out["success"] = self.success
        return json_safe(out)

    def line(self) -> str:
        cols = f" {', '.join(self.columns)}" if self.columns else ""
        return f"{self.name}{cols}: {self.message}"


@dataclass
class QualityReport:
    """Result of validating one extract; ``passed`` is False iff a critical check failed."""

    dataset_id: str
    run_id: str
    rows: int
    suite: str | None
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    #: rows held back in the private quarantine file (``on_bad_rows: quarantine``); the
    #: rest was accepted although critical row-level checks failed on these
    quarantined: int = 0
    #: private: where those rows are (var/quarantine/<id>/<run-id>.csv)
    quarantine_path: str | None = None

    @property
    def passed(self) -> bool:
        return not any(c.failed and c.severity == "critical" for c in self.checks)

    def failures(self, severity: Severity | None = None) -> list[Check]:
        return [c for c in self.checks if c.failed and (severity is None or c.severity == severity)]

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {
            s: {"passed": 0, "failed": 0, "skipped": 0} for s in SEVERITIES
        }
        for check in self.checks:
            counts[check.severity][check.status] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset_id": self.dataset_id,
            "run_id": self.run_id,
            "rows": self.rows,
            "suite": self.suite,
            "passed": self.passed,
            "counts": self.counts,
            "duration_s": round(self.duration_s, 3),
            "notes": list(self.notes),
            "quarantined": self.quarantined,
            "quarantine_path": self.quarantine_path,
            "checks": [c.to_dict() for c in self.checks],
        }

    def write(self, path: Path | str) -> Path:
        """Write the report as JSON, private (it holds example values) and atomic."""
        text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False, allow_nan=False)
        return write_private(path, text + "\n")

    def summary(self) -> str:
        """A few lines a steward reads in a log: verdict first, then each failed check.

        Public (it is the ledger reason): built from check names, columns and their
        public messages only; the values are in the report file.
        """
        critical, warnings = self.failures("critical"), self.failures("warning")
        ran = sum(1 for c in self.checks if c.status != "skipped")
        checks = f"{len(critical)} critical check{'s' if len(critical) != 1 else ''}"
        if critical and self.quarantined:
            head = (
                f"PASSED with {self.quarantined:,} of {self.rows:,} "
                f"row{'s' if self.rows != 1 else ''} quarantined ({checks} failed on them)"
            )
        elif critical:
            head = f"REJECTED: {checks} failed"
        else:
            head = f"PASSED: {ran} checks on {self.rows:,} rows"
        if warnings:
            head += f"; {len(warnings)} warning{'s' if len(warnings) != 1 else ''}"
        if len(critical) == 1 and not warnings:
            return f"{head}: {critical[0].line()}"
        lines = [head]
        lines += [f"  critical {c.line()}" for c in critical]
        lines += [f"  warning  {c.line()}" for c in warnings]
        skipped = [c for c in self.checks if c.status == "skipped"]
        if skipped:
            lines.append(
                f"  skipped  {len(skipped)} check(s): " + "; ".join(c.line() for c in skipped[:3])
            )
        return "\n".join(lines)
