"""Validation: structure (Table Schema, every row, vectorised) then content (GX suite).

``validate()`` returns a QualityReport; the extract may be published iff
``report.passed`` (no critical check failed). Warnings are reported, never blocking.
Before it, ``schema_drift`` compares the source's columns with the spec; after a failed
validation, ``quarantine_bad_rows`` may hold the bad rows back (``on_bad_rows``).
"""

from __future__ import annotations

import time
from pathlib import Path

from civicflow.quality.drift import SchemaDrift, schema_drift
from civicflow.quality.expectations import check_suite, load_suite, run_suite, without_covered
from civicflow.quality.quarantine import Held, quarantine_bad_rows
from civicflow.quality.report import Check, QualityReport
from civicflow.quality.structure import check_structure, table_schema, unique_sets
from civicflow.sources.base import Extract
from civicflow.spec.loader import require_suite
from civicflow.spec.models import DatasetSpec

__all__ = [
    "Check",
    "Held",
    "QualityReport",
    "SchemaDrift",
    "check_suite",
    "load_suite",
    "quarantine_bad_rows",
    "schema_drift",
    "table_schema",
    "validate",
]


def validate(spec: DatasetSpec, extract: Extract, expectations_dir: Path | str) -> QualityReport:
    """Check ``extract`` against ``spec`` and its expectation suite.

    Every dataset has a suite, ``expectations/<spec.suite_name>.json``; without it this
    raises SpecError naming the dataset and the file (the same rule ``civicflow check``
    applies, from ``spec.loader.require_suite``).
    """
    started = time.perf_counter()
    path = require_suite(spec, Path(expectations_dir))
    suite = load_suite(path, spec)
    structure = check_structure(spec, extract)
    report = QualityReport(
        dataset_id=spec.id,
        run_id=extract.run_id,
        rows=extract.rows,
        suite=suite.name,
        checks=list(structure.checks),
    )
    # A duplicate key is reported once, by the structure check that owns uniqueness.
    suite, covered = without_covered(suite, unique_sets(spec))
    # every failing row only when quarantine may need them (GX is slower with them)
    report.checks.extend(
        run_suite(
            suite,
            extract.frame,
            skip_columns=structure.missing_fields,
            all_rows=spec.on_bad_rows.action == "quarantine",
        )
    )
    report.notes.extend(f"{line}: not run, the structure check covers it" for line in covered)
    if structure.missing_fields:
        report.notes.append(
            "content checks on missing column(s) "
            + ", ".join(sorted(structure.missing_fields))
            + " were skipped"
        )
    report.duration_s = time.perf_counter() - started
    return report
