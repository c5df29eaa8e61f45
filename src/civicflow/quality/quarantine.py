"""Bad rows held back: with ``on_bad_rows: {action: quarantine}`` a few bad rows no
longer reject a whole file.

Rows failing a row-level critical check (type, required, enum, range, pattern, length,
unique, key duplicates, GX map expectations) go to a private CSV under
``var/quarantine/<id>/<run-id>.csv`` with the reasons per row and the row's raw source
text; the rest is published. The run is still rejected when a table-level critical
check failed (row count, column set, an aggregate: no row can be blamed), when the bad
share is above ``max_share``, or when no row would be left.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from civicflow.privatefs import private_file
from civicflow.quality.report import Check, QualityReport
from civicflow.settings import Settings
from civicflow.sources.base import Extract
from civicflow.spec.models import DatasetSpec

log = logging.getLogger("civicflow.quality.quarantine")


@dataclass
class Held:
    """What quarantine decided; ``reason`` is public (counts, check names, no values)."""

    accepted: bool
    reason: str
    #: rows held back (0 when rejected: nothing was written)
    rows: int = 0
    #: accepted only: the typed frame without the held rows, same index (row numbers)
    frame: pd.DataFrame | None = None
    #: accepted only: the private quarantine file
    path: Path | None = None


def quarantine_path(settings: Settings, dataset_id: str, run_id: str) -> Path:
    return settings.quarantine_dir / dataset_id / f"{run_id}.csv"


def _critical_failures(report: QualityReport) -> tuple[list[Check], list[Check]]:
    """Failed critical checks split into (row-level, table-level)."""
    failed = report.failures("critical")
    return [c for c in failed if c.row_level], [c for c in failed if not c.row_level]


def _label(check: Check) -> str:
    """``constraint-error enum status``: check, constraint and columns (spec text only)."""
    constraint = check.details.get("constraint") if check.layer == "structure" else None
    parts = [check.name, str(constraint) if constraint else "", ", ".join(check.columns)]
    return " ".join(p for p in parts if p)


def _reasons(checks: list[Check]) -> pa.Table:
    """One row per bad row number (ascending) with its check labels joined by "; "."""
    rows = np.concatenate([np.asarray(c.rows, dtype=np.int64) for c in checks])
    labels = np.concatenate(
        [np.full(len(np.asarray(c.rows)), _label(c), dtype=object) for c in checks]
    )
    pairs = pa.table({"row": rows, "label": pa.array(labels, pa.string())})
    grouped = pairs.group_by("row", use_threads=False).aggregate([("label", "list")])
    joined = pc.binary_join(grouped["label_list"], "; ")
    return pa.table({"row": grouped["row"], "reasons": joined}).sort_by("row")


def _write(path: Path, settings: Settings, reasons: pa.Table, ext: Extract) -> None:
    """The private CSV: row number, reasons, then every raw source column of that row."""
    positions = ext.frame.index.get_indexer(reasons["row"].to_numpy())
    if (positions < 0).any():
        raise RuntimeError(f"dataset {ext.dataset_id}: a failing row number is not in the extract")
    raw = ext.raw.take(pa.array(positions, pa.int64()))
    ours = ["row", "reasons"]
    if set(ours) & set(raw.column_names):  # a source header would collide: keep both
        ours = [f"civicflow_{n}" for n in ours]
    table = pa.table(
        [reasons["row"], reasons["reasons"], *raw.columns], names=[*ours, *raw.column_names]
    )
    settings.private_dir(path.parent)
    with private_file(path) as fh:
        pacsv.write_csv(table, fh)


def _rejected(head: str, report: QualityReport) -> Held:
    return Held(accepted=False, reason=f"{head}\n{report.summary()}")


def quarantine_bad_rows(
    spec: DatasetSpec, ext: Extract, report: QualityReport, settings: Settings
) -> Held | None:
    """Hold back the rows that failed ``report``'s row-level critical checks, if the spec allows.

    None when ``spec.on_bad_rows.action`` is ``reject`` (the run is rejected as before).
    Accepted: the file is written and ``report.quarantined`` / ``quarantine_path`` are
    set, so writing the report again records them and ``summary()`` says so.
    """
    policy = spec.on_bad_rows
    if policy.action == "reject":
        return None
    row_level, table_level = _critical_failures(report)
    if table_level:
        names = ", ".join(_label(c) for c in table_level)
        return _rejected(
            f"REJECTED: table-level critical check(s) failed ({names}); no row to quarantine",
            report,
        )
    if not row_level:
        return Held(accepted=True, reason="no bad rows", frame=ext.frame)
    reasons = _reasons(row_level)
    bad, total = reasons.num_rows, len(ext.frame)
    share = bad / total
    if share > policy.max_share:
        return _rejected(
            f"REJECTED: {bad:,} of {total:,} rows ({share:.2%}) fail critical checks, above "
            f"on_bad_rows.max_share {policy.max_share:.2%}",
            report,
        )
    if bad == total:
        return _rejected(f"REJECTED: all {total:,} rows fail critical checks", report)
    path = quarantine_path(settings, spec.id, ext.run_id)
    _write(path, settings, reasons, ext)
    keep = ~ext.frame.index.isin(reasons["row"].to_numpy())
    report.quarantined, report.quarantine_path = bad, str(path)
    log.info("%s: %s of %s rows quarantined (%.2f%%) in %s", spec.id, bad, total, 100 * share, path)
    return Held(
        accepted=True,
        reason=f"{bad:,} of {total:,} rows quarantined ({share:.2%}, max_share {policy.max_share:.2%})",
        rows=bad,
        frame=ext.frame[keep],
        path=path,
    )
