"""The validation result as Prefect artifacts: what the Prefect UI shows for a run.

Artifacts are visible to everyone with access to the Prefect UI, so they are PUBLIC
surfaces: they are built from check names, layers, severities, outcomes, counts,
columns and the public messages only, never from the examples or details (source
values), which stay in the private report whose path the summary gives.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact


def artifact_key(dataset_id: str) -> str:
    """``validation-<id>``: Prefect keys hold lowercase letters, digits and dashes only."""
    slug = re.sub(r"[^a-z0-9]+", "-", dataset_id.lower()).strip("-")
    return f"validation-{slug}"


def check_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One public row per check (no examples, no details)."""
    return [
        {
            "check": c.get("name"),
            "layer": c.get("layer"),
            "severity": c.get("severity"),
            "outcome": c.get("status"),
            "failing": c.get("unexpected_count", 0),
            "columns": ", ".join(c.get("columns") or []),
            "message": c.get("message", ""),
        }
        for c in report.get("checks") or []
    ]


def summary_markdown(report: dict[str, Any], html_path: Path) -> str:
    """Verdict and counts, and where the private report lives on the civicflow host.

    An error report (the run stopped) has a public ``error`` reason; its private
    ``detail`` is left out.
    """
    dataset, run = report.get("dataset_id"), report.get("run_id")
    lines = [f"# Validation of `{dataset}`", "", f"Run `{run}`."]
    if "stage" in report:
        lines += ["", f"**Stopped at {report['stage']}**: {report.get('error', '')}"]
    else:
        verdict = "passed" if report.get("passed") else "rejected"
        lines += ["", f"**Verdict: {verdict}** on {report.get('rows', 0):,} rows."]
        if report.get("quarantined"):
            lines.append(f"{report['quarantined']:,} rows quarantined.")
        for severity, counts in (report.get("counts") or {}).items():
            lines.append(
                f"- {severity}: {counts['passed']} passed, {counts['failed']} failed, "
                f"{counts['skipped']} skipped"
            )
    lines += [
        "",
        f"Private report (values from the data; on the civicflow host only): `{html_path}`",
    ]
    return "\n".join(lines)


def publish_validation_artifact(dataset_id: str, report_path: Path | str) -> None:
    """Create the run's table and summary artifacts from its validation report.

    Call it inside a flow run (Prefect attaches artifacts to the current run).
    """
    report_path = Path(report_path)
    report = json.loads(report_path.read_text(encoding="utf-8"))
    key = artifact_key(dataset_id)
    rows = check_rows(report)
    if rows:  # an error report has no checks; the summary says why
        create_table_artifact(
            rows, key=key, description=f"Validation checks of {dataset_id} (public)"
        )
    create_markdown_artifact(
        summary_markdown(report, report_path.with_suffix(".html")),
        key=f"{key}-summary",
        description=f"Validation verdict of {dataset_id} (public)",
    )


def attach_run_report(dataset_id: str, report_path: Path | str | None) -> None:
    """``publish_validation_artifact`` for a run that wrote a report (every flow that
    runs the pipeline calls this, so each run shows its checks in the Prefect UI)."""
    if report_path is not None and Path(report_path).is_file():
        publish_validation_artifact(dataset_id, report_path)
