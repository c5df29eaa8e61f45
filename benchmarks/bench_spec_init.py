"""`civicflow spec init` on every bundled raw file: time and marked items per draft
(the Excel workbook read with its hand-written spec's sheet, header row and footer),
then the profile of a 1,000,000-row 311-shaped extract (time and peak memory).

The 1M-row table repeats the real la311 rows with fresh sr_numbers, so the key stays
unique and the profiler does the same work as on a real million-row export.

    .venv/bin/python benchmarks/bench_spec_init.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import resource
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import yaml

from civicflow.onboarding import draft_dataset, read_target
from civicflow.onboarding.read import ReadOptions, SourceTable
from civicflow.settings import Settings

PROJECT_DIR = Path(__file__).resolve().parents[1]
BUNDLED = {
    "la311_service_requests": "MyLA311_Service_Request_Data_2017_Subset.csv",
    "code_enforcement_cases": "code_enforcement_cases.csv",
    "lax_passenger_traffic": "lax_passenger_traffic_by_terminal.csv",
    "neighborhood_councils": "la_neighborhood_councils_certified.geojson",
    "parking_citations": "la_parking_citations_subset.csv",
    "lax_passenger_workbook": "lax_passenger_traffic_by_year.xlsx",
}


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def kinds(keys: list[str]) -> str:
    """Marks grouped by what they decide: metadata, primary key, enum, privacy, null values."""
    counted = Counter(
        "privacy"
        if k.endswith("privacy.reason")
        else "enum"
        if k.endswith(".enum")
        else "null_values"
        if k == "source.null_values"
        else k
        for k in keys
    )
    decided = ("primary_key", "enum", "privacy", "null_values")
    meta = sum(n for k, n in counted.items() if k not in decided)
    parts = [f"metadata {meta}"] + [f"{k} {counted[k]}" for k in decided if counted[k]]
    return ", ".join(parts)


def options(name: str) -> ReadOptions:
    """What `spec init` is told for a workbook (--sheet, --header-row, --footer-rows),
    as the hand-written spec of the same data reads it."""
    spec = yaml.safe_load((PROJECT_DIR / "datasets" / f"{name}.yaml").read_text())
    source = spec["source"]
    if source["kind"] != "excel":
        return ReadOptions()
    return ReadOptions(
        sheet=source["sheet"],
        header_row=source.get("header_row", 1),
        footer_rows=source.get("footer_rows", 0),
    )


def bundled(settings: Settings) -> None:
    print(f"{'dataset':<24} {'rows':>6} {'fields':>6} {'time':>7} {'marks':>5}  what they decide")
    for name, file in BUNDLED.items():
        start = time.perf_counter()
        path = str(PROJECT_DIR / "data" / name / file)
        source = read_target(f"draft_{name}", path, settings, options(name))
        draft = draft_dataset(f"draft_{name}", source)
        took = time.perf_counter() - start
        keys = [m.key for m in draft.marks]
        print(
            f"{name:<24} {source.table.num_rows:>6,} {len(draft.spec['fields']):>6} "
            f"{took:>6.2f}s {len(keys):>5}  {kinds(keys)}"
        )


def million(settings: Settings, rows: int) -> None:
    path = PROJECT_DIR / "data" / "la311_service_requests" / BUNDLED["la311_service_requests"]
    real = read_target("draft_big", str(path), settings)
    table = real.table.take(pa.array(np.arange(rows) % real.table.num_rows))
    numbers = np.char.add("1-", (900_000_000 + np.arange(rows)).astype(str)).astype(object)
    column = table.column_names.index("SRNumber")
    table = table.set_column(column, "SRNumber", pa.array(numbers, pa.string())).combine_chunks()
    start = time.perf_counter()
    draft = draft_dataset("draft_big", SourceTable(table, real.source, real.origin, real.title))
    took = time.perf_counter() - start
    print(
        f"\nprofile + draft of {rows:,} rows x {table.num_columns} columns: {took:.1f} s "
        f"({rows / took:,.0f} rows/s), {len(draft.marks)} marks, peak RSS {peak_mib():,.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    rows = parser.parse_args().rows
    settings = Settings(project_dir=PROJECT_DIR, var_dir=PROJECT_DIR / "var")
    bundled(settings)
    if rows:
        million(settings, rows)


if __name__ == "__main__":
    main()
