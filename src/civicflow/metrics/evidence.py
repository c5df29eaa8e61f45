"""Evidence certification reads from what was actually published, not from pipeline runs.

A nightly re-run of 2015 data is not fresh data, a file is not in an open format because
a comment says so, and a sample attestation is not evidence. Each function here looks
at the thing itself: the latest record date in the published Parquet, the file's own
format marker, the suite file on disk, the host of an evidence address.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

# the latest record date is read by civicflow.freshness, shared with status and alerts
from civicflow.freshness import RecordDate, latest_record
from civicflow.metrics.models import Attestation
from civicflow.published import Manifest
from civicflow.settings import Settings
from civicflow.spec.loader import missing_suite
from civicflow.spec.models import DatasetSpec

PARQUET_MAGIC = b"PAR1"
# Reserved names (RFC 2606, RFC 6761): an address there is a placeholder, never evidence.
RESERVED_TLDS = (".example", ".test", ".invalid", ".localhost")
RESERVED_DOMAINS = ("example.com", "example.net", "example.org")

__all__ = [
    "RecordDate",
    "failed_check_names",
    "has_suite",
    "latest_record",
    "open_formats",
    "sample_reason",
]


def open_formats(manifest: Manifest) -> list[str]:
    """Open formats the published version really is in (checked on the file's bytes)."""
    path = manifest.path
    if not path.is_file() or path.stat().st_size < 2 * len(PARQUET_MAGIC):
        return []
    with path.open("rb") as fh:
        head = fh.read(len(PARQUET_MAGIC))
        fh.seek(-len(PARQUET_MAGIC), 2)
        tail = fh.read(len(PARQUET_MAGIC))
    return ["parquet"] if head == tail == PARQUET_MAGIC else []


def has_suite(settings: Settings, spec: DatasetSpec) -> bool:
    """The project rule: a dataset's content is checked only if its suite file exists."""
    return missing_suite(spec, settings.expectations_dir) is None


def failed_check_names(report_path: str | None) -> list[str]:
    """Names (and columns) of the critical checks a run failed, from its private report.

    Only names and column names leave the report: never a message or an example value.
    """
    if not report_path or not Path(report_path).is_file():
        return []
    try:
        report = json.loads(Path(report_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    names = []
    for check in report.get("checks", []) if isinstance(report, dict) else []:
        if check.get("status") == "failed" and check.get("severity") == "critical":
            columns = [str(c) for c in check.get("columns") or []]
            names.append(str(check.get("name")) + (f" ({', '.join(columns)})" if columns else ""))
    return names


def sample_reason(attestation: Attestation) -> str | None:
    """Why an attestation is only a sample (and counts for nothing), or None."""
    if attestation.sample:
        return "marked as a sample"
    host = (urlsplit(attestation.evidence_url).hostname or "").lower().rstrip(".")
    if host.endswith(RESERVED_TLDS) or any(
        host == d or host.endswith("." + d) for d in RESERVED_DOMAINS
    ):
        return f"its evidence is at a reserved placeholder address ({host})"
    return None
