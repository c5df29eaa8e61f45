"""PostgreSQL extract throughput on a city-sized 311 table (default 1,000,000 rows).

Starts a throwaway PostgreSQL 15 cluster in a temporary folder, loads the bundled 9,999
real LA 311 rows repeated with fresh SR numbers (COPY FROM; columns typed as the spec
declares them: timestamp, bigint, double precision, text), then times, each in a fresh
process so its peak memory is its own:

- pull:    the COPY stream written to a file (what extract's raw copy costs),
- read:    that file read (CSV reader, PostgreSQL text forms) and typed into a frame, and
- extract: civicflow's whole ``extract()``: both of the above in one call.

Run: `.venv/bin/python benchmarks/bench_postgres.py [ROWS]`.
"""

from __future__ import annotations

import multiprocessing
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from psycopg import sql  # noqa: E402

from civicflow.settings import Settings  # noqa: E402
from civicflow.spec import find_dataset  # noqa: E402
from civicflow.spec.models import DatasetSpec, PostgresSource  # noqa: E402
from tests.fixtures.postgres import READER, Cluster, installed  # noqa: E402

CSV = PROJECT / "data" / "la311_service_requests" / "MyLA311_Service_Request_Data_2017_Subset.csv"
DATASET = "la311_service_requests"
TABLE = "service_requests"
PASSWORD = "bench-only-password"  # noqa: S105  (a throwaway cluster's, deleted at the end)
PG_TYPES = {"datetime": "timestamp", "integer": "bigint", "number": "double precision"}


def build_csv(rows: int, path: Path) -> None:
    header = CSV.open(encoding="utf-8").readline().strip().split(",")
    base = pacsv.read_csv(
        CSV, convert_options=pacsv.ConvertOptions(column_types={h: pa.string() for h in header})
    )
    table = pa.concat_tables([base] * -(-rows // base.num_rows)).slice(0, rows)
    numbers = pc.cast(pa.array(range(rows)), pa.string())
    table = table.set_column(0, "SRNumber", pc.binary_join_element_wise("1-", numbers, ""))
    pacsv.write_csv(table, path)


def bench_spec(settings: Settings) -> DatasetSpec:
    """The 311 spec, read from the table (timestamps in PostgreSQL's ISO form)."""
    spec = find_dataset(settings.datasets_dir, DATASET)
    source = PostgresSource(kind="postgres", table=TABLE, timestamp_formats=["%Y-%m-%d %H:%M:%S"])
    return spec.model_copy(update={"source": source})


def load(pg: Cluster, spec: DatasetSpec, csv_path: Path) -> None:
    columns = [
        sql.SQL("{} {}").format(
            sql.Identifier(f.source_name), sql.SQL(PG_TYPES.get(str(f.type), "text"))
        )
        for f in spec.fields
    ]
    pg.ensure_role(READER, PASSWORD)
    pg.create_database("bench", READER)
    with pg.admin("bench") as conn:
        conn.execute("SET DateStyle = 'ISO, MDY'")  # the CSV's 12/31/2017 11:59:58 PM
        conn.execute(sql.SQL("CREATE TABLE {} ({}, PRIMARY KEY ({}))").format(
            sql.Identifier(TABLE), sql.SQL(", ").join(columns), sql.Identifier("SRNumber")
        ))  # fmt: skip
        # Arrow quotes every string, "" included: FORCE_NULL reads those as NULL too.
        copy_in = sql.SQL("COPY {} FROM STDIN WITH (FORMAT csv, HEADER true, FORCE_NULL ({}))")
        names = sql.SQL(", ").join(sql.Identifier(f.source_name) for f in spec.fields)
        with (
            conn.cursor().copy(copy_in.format(sql.Identifier(TABLE), names)) as copy,
            csv_path.open("rb") as fh,
        ):
            while chunk := fh.read(1 << 20):
                copy.write(chunk)
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(TABLE)))


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(what: str, settings: Settings, out: Any) -> None:
    """In a fresh process: time ``what`` (pull, read or extract): seconds, rows, peak RSS."""
    from civicflow.sources import extract, get_source

    spec = bench_spec(settings)
    before = peak_rss_mib()
    started = time.perf_counter()
    if what == "pull":
        raw = settings.var_dir / "pull.csv"
        with raw.open("wb") as fh:
            for chunk in get_source("postgres").pull(spec, settings):  # type: ignore[attr-defined]
                fh.write(chunk)
        rows, size = -1, raw.stat().st_size
    elif what == "read":
        from civicflow.sources.cast import cast_frame

        raw = settings.var_dir / "pull.csv"
        cast_frame(spec, get_source("postgres").read(spec, raw))
        rows, size = -1, raw.stat().st_size
    else:
        result = extract(spec, settings, "bench")
        rows, size = result.rows, result.raw_path.stat().st_size
    seconds, peak = time.perf_counter() - started, peak_rss_mib()
    unparsed = 0
    if what == "extract":  # values the casting could not read (a raw value, no typed one)
        for f in spec.fields:
            raw_present = result.raw[f.source_name].is_valid().to_numpy(zero_copy_only=False)
            unparsed += int((raw_present & result.frame[f.name].isna().to_numpy()).sum())
    out.put((what, seconds, rows, size, before, peak, unparsed))


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    if not installed():
        sys.exit("PostgreSQL 15 is not installed: run `make system-deps` (as root)")
    # The cluster in a folder of its own (the postgres user must reach it), the rest private.
    pg = Cluster(Path(tempfile.mkdtemp(prefix="civicflow-bench-pg-")), settings=("fsync=off",))
    tmp = Path(tempfile.mkdtemp(prefix="civicflow-bench-"))
    try:
        var = tmp / "var"
        settings = Settings(project_dir=PROJECT, var_dir=var, env={
            "CIVICFLOW_POSTGRES_URL": pg.url("bench", READER),
            "CIVICFLOW_POSTGRES_PASSWORD": PASSWORD,
        })  # fmt: skip
        settings.private_dir(var)
        spec = bench_spec(settings)
        t0 = time.perf_counter()
        build_csv(rows, tmp / "big.csv")
        pg.init().start()
        load(pg, spec, tmp / "big.csv")
        (tmp / "big.csv").unlink()
        print(
            f"{rows:,} rows x {len(spec.fields)} columns loaded in {time.perf_counter() - t0:.1f} s"
        )

        ctx = multiprocessing.get_context("spawn")
        results = ctx.Queue()
        for what in ("pull", "read", "extract"):
            child = ctx.Process(target=measure, args=(what, settings, results))
            child.start()
            child.join()
            if child.exitcode != 0:
                sys.exit(f"{what} failed (exit {child.exitcode})")
            name, seconds, got, size, base, peak, unparsed = results.get()
            got = rows if got < 0 else got
            print(
                f"  {name:<8} {seconds:6.2f} s  {got / seconds:>10,.0f} rows/s  "
                f"{size / 1e6 / seconds:6.1f} MB/s  peak RSS {peak:,.0f} MiB "
                f"(after imports {base:,.0f} MiB)"
                + (f", {unparsed:,} values not typed" if name == "extract" else "")
            )
    finally:
        pg.stop()
        shutil.rmtree(pg.root, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
