"""Validation: structure (Table Schema, every row, vectorised) then content (GX suite).

``validate()`` returns a QualityReport; the extract may be published iff
``report.passed`` (no critical check failed). Warnings are reported, never blocking.
Before it, ``schema_drift`` compares the source's columns with the spec; after a failed
validation, ``quarantine_bad_rows`` may hold the bad rows back (``on_bad_rows``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from civicflow.quality.drift import SchemaDrift, schema_drift
from civicflow.quality.expectations import check_suite, load_suite, run_suite, without_covered
from civicflow.quality.quarantine import Held, quarantine_bad_rows
from civicflow.quality.report import Check, QualityReport
from civicflow.quality.structure import (
    StructureResult,
    check_structure,
    table_schema,
    unique_sets,
)
from civicflow.sources.base import Extract
from civicflow.spec.loader import require_suite
from civicflow.spec.models import DatasetSpec

if TYPE_CHECKING:
    from great_expectations.core.expectation_suite import ExpectationSuite

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


def content_suite(
    spec: DatasetSpec, expectations_dir: Path | str
) -> tuple[ExpectationSuite, list[str]]:
    """The dataset's suite as it runs, and a line per expectation left out.

    Every dataset has a suite, ``expectations/<spec.suite_name>.json``; without it this
    raises SpecError naming the dataset and the file (the same rule ``civicflow check``
    applies, from ``spec.loader.require_suite``). A duplicate key is reported once, by
    the structure check that owns uniqueness, so GX does not check it again.
    """
    path = require_suite(spec, Path(expectations_dir))
    return without_covered(load_suite(path, spec), unique_sets(spec))


def quarantines(spec: DatasetSpec) -> bool:
    """Whether GX must list every failing row (quarantine needs them; GX is slower)."""
    return spec.on_bad_rows.action == "quarantine"


def assemble_report(
    spec: DatasetSpec,
    run_id: str,
    rows: int,
    suite_name: str,
    structure: StructureResult,
    content: list[Check],
    covered: list[str],
) -> QualityReport:
    """The report from the structure result and the content checks (durations aside)."""
    report = QualityReport(
        dataset_id=spec.id,
        run_id=run_id,
        rows=rows,
        suite=suite_name,
        checks=[*structure.checks, *content],
    )
    report.notes.extend(f"{line}: not run, the structure check covers it" for line in covered)
    if structure.missing_fields:
        report.notes.append(
            "content checks on missing column(s) "
            + ", ".join(sorted(structure.missing_fields))
            + " were skipped"
        )
    return report


def validate(spec: DatasetSpec, extract: Extract, expectations_dir: Path | str) -> QualityReport:
    """Check ``extract`` against ``spec`` and its expectation suite (see ``content_suite``)."""
    started = time.perf_counter()
    suite, covered = content_suite(spec, expectations_dir)
    structure = check_structure(spec, extract)
    content = run_suite(
        suite, extract.frame, skip_columns=structure.missing_fields, all_rows=quarantines(spec)
    )
    report = assemble_report(
        spec, extract.run_id, extract.rows, suite.name, structure, content, covered
    )
    report.duration_s = time.perf_counter() - started
    return report
