"""Schema drift and bad-row quarantine on a 1,000,000-row 311-shaped extract.

The extract repeats the real la311 rows with fresh sr_numbers (bench_quality's
build_extract), then plants 1 % bad rows (half an integer that does not parse, half a
status outside the suite's set) and times drift, validation and quarantine.

    .venv/bin/python benchmarks/bench_quarantine.py [--rows 1000000] [--bad 0.01]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quality import PROJECT_DIR, build_extract, timed  # noqa: E402

from civicflow.quality import validate  # noqa: E402
from civicflow.quality.drift import schema_drift  # noqa: E402
from civicflow.quality.quarantine import quarantine_bad_rows  # noqa: E402
from civicflow.settings import load_settings  # noqa: E402
from civicflow.sources.base import Extract  # noqa: E402
from civicflow.sources.cast import cast_frame  # noqa: E402
from civicflow.spec import load_dataset  # noqa: E402
from civicflow.spec.models import BadRowsSpec  # noqa: E402


def plant(raw: pa.Table, share: float) -> pa.Table:
    rows = np.random.default_rng(1).choice(raw.num_rows, int(raw.num_rows * share), replace=False)
    half = len(rows) // 2
    for column, where, value in (("CD", rows[:half], "n/a"), ("Status", rows[half:], "Pending")):
        mask = np.zeros(raw.num_rows, dtype=bool)
        mask[where] = True
        changed = pc.if_else(pa.array(mask), pa.scalar(value), raw[column])
        raw = raw.set_column(raw.column_names.index(column), column, changed)
    return raw


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--bad", type=float, default=0.01)
    args = parser.parse_args()
    spec = load_dataset(PROJECT_DIR / "datasets" / "la311_service_requests.yaml")
    spec = spec.model_copy(
        update={"on_bad_rows": BadRowsSpec(action="quarantine", max_share=args.bad)}
    )
    clean = build_extract(args.rows)
    raw = plant(clean.raw, args.bad).combine_chunks()
    ext = timed(
        "plant bad rows + cast",
        args.rows,
        lambda: Extract(
            spec.id, "20261123T000000Z-bench", clean.raw_path, "0" * 64, raw, cast_frame(spec, raw)
        ),
    )
    drift = timed("schema_drift", args.rows, lambda: schema_drift(spec, ext.raw, ext.frame))
    print(" ", drift.reason().splitlines()[0])
    # worst case: every header changed (33 missing x 33 new pairs compared by name and values)
    renamed = raw.rename_columns([f"col{i}" for i in range(raw.num_columns)])
    retyped = cast_frame(spec, renamed)
    worst = timed(
        "schema_drift, every header changed",
        args.rows,
        lambda: schema_drift(spec, renamed, retyped),
    )
    print(" ", worst.reason().splitlines()[0], f"({len(worst.renamed)} renamed-looking)")
    report = timed(
        "validate() with bad rows",
        args.rows,
        lambda: validate(spec, ext, PROJECT_DIR / "expectations"),
    )
    print(" ", report.summary().splitlines()[0])
    with tempfile.TemporaryDirectory() as var:
        import os

        os.environ["CIVICFLOW_VAR_DIR"] = var
        settings = load_settings(PROJECT_DIR)
        held = timed(
            "quarantine_bad_rows",
            args.rows,
            lambda: quarantine_bad_rows(spec, ext, report, settings),
        )
        assert held is not None
        print(
            " ",
            held.reason.splitlines()[0],
            f"file {held.path.stat().st_size / 2**20:.1f} MiB" if held.path else "",
        )


if __name__ == "__main__":
    main()
