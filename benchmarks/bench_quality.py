"""Validation throughput on a 1,000,000-row 311-shaped extract.

Builds the extract by repeating the real la311 rows with fresh sr_numbers (so the
primary key stays unique), then times the structure checks and the GX suite.

    .venv/bin/python benchmarks/bench_quality.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from civicflow.quality import validate
from civicflow.quality.expectations import load_suite, run_suite
from civicflow.quality.structure import check_structure
from civicflow.sources.base import Extract
from civicflow.sources.cast import cast_frame
from civicflow.sources.csv import CsvReader
from civicflow.spec import load_dataset
from civicflow.spec.loader import suite_file
from civicflow.spec.models import CsvSource

PROJECT_DIR = Path(__file__).resolve().parents[1]


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def build_extract(rows: int) -> Extract:
    spec = load_dataset(PROJECT_DIR / "datasets" / "la311_service_requests.yaml")
    assert isinstance(spec.source, CsvSource), "the 311 spec reads a bundled CSV"
    path = PROJECT_DIR / spec.source.path
    real = CsvReader().read(spec, path)
    raw = real.take(pa.array(np.arange(rows) % real.num_rows))
    numbers = pa.array(
        np.char.add("1-", (900_000_000 + np.arange(rows)).astype(str)).astype(object), pa.string()
    )
    raw = raw.set_column(raw.column_names.index("SRNumber"), "SRNumber", numbers).combine_chunks()
    return Extract(spec.id, "bench", path, "0" * 64, raw, cast_frame(spec, raw))


def timed(label: str, rows: int, fn):
    start = time.perf_counter()
    out = fn()
    took = time.perf_counter() - start
    print(f"{label:<34} {took:7.2f} s  {rows / took:>12,.0f} rows/s  peak {peak_mib():,.0f} MiB")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    rows = parser.parse_args().rows
    spec = load_dataset(PROJECT_DIR / "datasets" / "la311_service_requests.yaml")
    ext = timed("build extract (read + repeat + cast)", rows, lambda: build_extract(rows))
    print(
        f"extract: {ext.rows:,} rows x {ext.raw.num_columns} columns, raw {ext.raw.nbytes / 2**20:,.0f} MiB"
    )
    structure = timed("structure (all rows)", rows, lambda: check_structure(spec, ext))
    suite_path = suite_file(spec, PROJECT_DIR / "expectations")
    suite = timed("load suite (incl. GX import)", rows, lambda: load_suite(suite_path, spec))
    content = timed(
        f"GX suite ({len(suite.expectations)} expectations)",
        rows,
        lambda: run_suite(suite, ext.frame),
    )
    report = timed(
        "validate() end to end (warm)",
        rows,
        lambda: validate(spec, ext, PROJECT_DIR / "expectations"),
    )
    failed = [c for c in structure.checks + content if c.failed]
    print(
        f"checks: {len(structure.checks)} structure + {len(content)} content; failed: {len(failed)}"
    )
    print(report.summary().splitlines()[0])


if __name__ == "__main__":
    main()
