"""Validation: structure (Table Schema, every row, vectorised) then content (GX suite).

``validate()`` returns a QualityReport; the extract may be published iff
``report.passed`` (no critical check failed). Warnings are reported, never blocking.
"""

from __future__ import annotations

import time
from pathlib import Path

from civicflow.quality.expectations import load_suite, run_suite, suite_path
from civicflow.quality.report import Check, QualityReport
from civicflow.quality.structure import check_structure, table_schema
from civicflow.sources.base import Extract
from civicflow.spec.errors import SpecError, SpecProblem
from civicflow.spec.models import DatasetSpec

__all__ = ["Check", "QualityReport", "load_suite", "table_schema", "validate"]


def validate(spec: DatasetSpec, extract: Extract, expectations_dir: Path | str) -> QualityReport:
    """Check ``extract`` against ``spec`` and its expectation suite.

    The suite is ``expectations/<spec.suite_name>.json``. A spec that names a suite
    explicitly must have the file (SpecError otherwise); one that relies on the default
    name and has no file gets structure checks only, noted in the report.
    """
    started = time.perf_counter()
    structure = check_structure(spec, extract)
    report = QualityReport(
        dataset_id=spec.id,
        run_id=extract.run_id,
        rows=extract.rows,
        suite=None,
        checks=list(structure.checks),
    )
    path = suite_path(Path(expectations_dir), spec.suite_name)
    if path.is_file():
        suite = load_suite(path, spec)
        report.suite = suite.name
        report.checks.extend(run_suite(suite, extract.frame, skip_columns=structure.missing_fields))
        if structure.missing_fields:
            report.notes.append(
                "content checks on missing column(s) "
                + ", ".join(sorted(structure.missing_fields))
                + " were skipped"
            )
    elif spec.expectation_suite is not None:
        raise SpecError(
            [
                SpecProblem(
                    path,
                    "",
                    f"expectation suite {spec.expectation_suite!r} named by dataset {spec.id} not found",
                )
            ]
        )
    else:
        report.notes.append(f"no expectation suite {path.name}: structure checks only")
    report.duration_s = time.perf_counter() - started
    return report
