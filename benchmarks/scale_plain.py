"""Child process of the scale benchmark: the plain script a data steward would write
instead of civicflow, on the same file (the baseline of issue 13).

1. pandas ``read_csv`` with the column types the spec declares (text, nullable
   integers, floats), the columns renamed to the spec's names and the timestamps
   parsed with the spec's format;
2. one Great Expectations validation of the whole frame with the dataset's suite
   from ``expectations/`` (GX's own pandas batch, nothing civicflow adds);
3. ``sqlite-utils`` ``insert_all`` of every row into a fresh SQLite file, keyed by the
   primary key.

No privacy rules, no portal, no atomic swap: what a steward's script does. The spec
YAML is read with PyYAML only for the names and types a steward would type by hand.
Prints one JSON line: seconds per step, the total, how many expectations failed, rows
inserted and this process's peak RSS.

Run: ``python benchmarks/scale_plain.py SPEC.yaml SUITE.json SOURCE.csv OUT.db``.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

DTYPES = {"string": "string", "geopoint": "string", "integer": "Int64", "number": "float64"}


def main() -> None:
    spec_path, suite_path, source, out = (Path(a) for a in sys.argv[1:5])
    started = time.perf_counter()
    import great_expectations as gx
    import pandas as pd
    import sqlite_utils
    import yaml
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    spec = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    fields = spec["fields"]
    formats = spec["source"].get("timestamp_formats") or [None]
    timings = {"import_s": time.perf_counter() - started}

    t = time.perf_counter()
    dtype = {f.get("source", f["name"]): DTYPES.get(f["type"], "string") for f in fields}
    frame = pd.read_csv(source, dtype=dtype)
    frame = frame.rename(columns={f.get("source", f["name"]): f["name"] for f in fields})
    for f in fields:
        if f["type"] in ("datetime", "date"):
            frame[f["name"]] = pd.to_datetime(frame[f["name"]], format=formats[0], errors="coerce")
    timings["read_s"] = time.perf_counter() - t

    t = time.perf_counter()
    suite_json = json.loads(suite_path.read_text(encoding="utf-8"))
    context = gx.get_context(mode="ephemeral")
    batch = (
        context.data_sources.add_pandas("plain")
        .add_dataframe_asset(spec["id"])
        .add_batch_definition_whole_dataframe("all")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    suite = gx.ExpectationSuite(
        name=suite_json["name"],
        expectations=[
            ExpectationConfiguration(
                type=e["type"], kwargs=e.get("kwargs", {}), meta=e.get("meta", {})
            ).to_domain_obj()
            for e in suite_json["expectations"]
        ],
    )
    result = batch.validate(suite)
    failed = sum(1 for r in result.results if not r.success)
    timings["validate_s"] = time.perf_counter() - t

    t = time.perf_counter()
    out.unlink(missing_ok=True)
    db = sqlite_utils.Database(out)
    clean = frame.astype(object).where(frame.notna(), None)
    columns = list(clean.columns)
    rows = (dict(zip(columns, r, strict=True)) for r in clean.itertuples(index=False, name=None))
    table = spec.get("portal", {}).get("table") or spec["id"]
    target = db.table(table)
    target.insert_all(rows, pk=spec["primary_key"][0])
    inserted = target.count
    db.close()
    timings["insert_s"] = time.perf_counter() - t

    print(
        json.dumps(
            {
                **{k: round(v, 3) for k, v in timings.items()},
                "total_s": round(time.perf_counter() - started, 3),
                "rows": int(len(frame)),
                "inserted": int(inserted),
                "expectations": len(result.results),
                "expectations_failed": failed,
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
