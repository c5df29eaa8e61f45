"""Publish throughput to a real local Datasette portal (default 200,000 rows x 33 columns).

The rows are the bundled 9,999 LA 311 requests, extracted and typed by civicflow's own
extract step, repeated with fresh SR numbers. Starts a private portal in a temporary
folder, publishes once (new table) and once more (replace), and prints rows/s.

Run: `.venv/bin/python benchmarks/bench_portal.py [ROWS] [--batch-rows N]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from civicflow import published
from civicflow.pipeline import table_metadata
from civicflow.portals import get_portal, server
from civicflow.portals.datasette import DEFAULT_BATCH_ROWS
from civicflow.settings import Settings
from civicflow.sources import extract
from civicflow.spec import find_dataset

PROJECT = Path(__file__).resolve().parents[1]
DATASET = "la311_service_requests"


def city_frame(settings: Settings, rows: int) -> tuple[pd.DataFrame, list]:
    spec = find_dataset(settings.datasets_dir, DATASET)
    base = extract(spec, settings, "bench").frame.reset_index(drop=True)
    frame = pd.concat([base] * -(-rows // len(base)), ignore_index=True).iloc[:rows]
    frame["sr_number"] = "1-" + pd.RangeIndex(rows).astype(str)
    fields = spec.published_fields()
    return frame[[f.name for f in fields]], fields


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", type=int, nargs="?", default=200_000)
    parser.add_argument("--batch-rows", type=int, default=DEFAULT_BATCH_ROWS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="  %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise

    with tempfile.TemporaryDirectory() as tmp, socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        url = f"http://127.0.0.1:{port}"
        settings = Settings(project_dir=PROJECT, var_dir=Path(tmp) / "var", portal_url=url, env={})
        frame, fields = city_frame(settings, args.rows)
        spec = find_dataset(settings.datasets_dir, DATASET)
        print(f"{len(frame):,} rows x {len(frame.columns)} columns, batches of {args.batch_rows:,}")

        proc = server.start(settings, port, quiet=True)
        try:
            server.wait_until_up(url, timeout=60, proc=proc)
            portal = get_portal("datasette", settings)
            portal.batch_rows = args.batch_rows  # type: ignore[attr-defined]

            def timed_publish(run_id: str, metadata: Any) -> tuple[Any, float]:
                started = time.perf_counter()
                result = portal.publish(
                    DATASET,
                    frame,
                    fields=fields,
                    primary_key=spec.primary_key,
                    version=published.content_version(frame),
                    run_id=run_id,
                    metadata=metadata,
                )
                return result, time.perf_counter() - started

            for attempt in ("new table", "replace"):
                frame["request_source"] = attempt  # a different version each time
                result, seconds = timed_publish(f"bench-{attempt}", table_metadata(spec))
                print(
                    f"{attempt:<10} {result.rows:>10,} rows {seconds:7.2f} s {result.rows / seconds:>10,.0f} rows/s"
                )
            again, seconds = timed_publish("bench-unchanged", table_metadata(spec))
            print(f"unchanged  changed={again.changed} in {seconds:.3f} s")
            # A title edit alone: a new version with the live rows, nothing uploaded.
            edited = dataclasses.replace(table_metadata(spec), title="Edited title")
            relabel, seconds = timed_publish("bench-metadata", edited)
            print(
                f"metadata   change={relabel.change} in {seconds:.3f} s (new version, no rows uploaded)"
            )
        finally:
            server.stop(proc)


if __name__ == "__main__":
    main()
