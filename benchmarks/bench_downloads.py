"""Download speed of every catalog format, end to end over HTTP (default 1,000,000 rows).

The rows are the bundled 9,999 LA 311 requests, extracted and typed by civicflow's own
extract step, repeated with fresh SR numbers (as in bench_portal.py), published to a
private Datasette portal in a temporary folder with the spec's metadata. Then each
download (CSV, CSV with BOM, JSON, GeoJSON, Parquet, the Data Package descriptor) is
fetched whole as a client would, streamed to a byte counter, and timed from the request
to the last byte; prints rows/s, MB and MB/s,; and the portal process's peak resident memory
(the server streams in chunks, so it must not grow with the rows).

Run: `.venv/bin/python benchmarks/bench_downloads.py [ROWS]`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_portal import DATASET, city_frame, datasette  # noqa: E402

from civicflow import published  # noqa: E402
from civicflow.pipeline import table_metadata  # noqa: E402
from civicflow.spec import find_dataset  # noqa: E402

DOWNLOADS = [
    ("csv", f"/-/download/{DATASET}.csv"),
    ("csv+bom", f"/-/download/{DATASET}.csv?bom=1"),
    ("json", f"/-/download/{DATASET}.json"),
    ("geojson", f"/-/download/{DATASET}.geojson"),
    ("parquet", f"/-/download/{DATASET}.parquet"),
    ("datapackage", f"/-/download/{DATASET}/datapackage.json"),
]


def server_peak_mb() -> float:
    """Peak resident memory (VmHWM) of the portal process: this script's child (Linux)."""
    peak = 0.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields.get("PPid", "0").strip()) == os.getpid() and "VmHWM" in fields:
            peak = max(peak, int(fields["VmHWM"].split()[0]) / 1024)
    return peak


def fetch(url: str) -> tuple[int, float]:
    """Bytes of the whole download and the seconds from request to last byte."""
    started = time.perf_counter()
    size = 0
    with httpx.stream("GET", url, timeout=3600) as response:
        response.raise_for_status()
        for part in response.iter_raw(1 << 20):
            size += len(part)
    return size, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", type=int, nargs="?", default=1_000_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="  %(message)s")

    with tempfile.TemporaryDirectory() as tmp, datasette(Path(tmp), 5_000) as portal_up:
        settings, portal = portal_up.settings, portal_up.portal
        frame, fields = city_frame(settings, args.rows, None)
        spec = find_dataset(settings.datasets_dir, DATASET)
        started = time.perf_counter()
        result = portal.publish(
            DATASET,
            frame,
            fields=fields,
            primary_key=spec.primary_key,
            version=published.content_version(frame),
            run_id="bench-downloads",
            metadata=table_metadata(spec),
        )
        print(
            f"published {result.rows:,} rows x {len(frame.columns)} columns"
            f" in {time.perf_counter() - started:.1f} s"
        )
        del frame
        print(f"portal peak RSS after the publish {server_peak_mb():,.0f} MB")
        rows = result.rows
        print(f"{'format':<12} {'seconds':>8} {'rows/s':>12} {'MB':>9} {'MB/s':>7}")
        for name, path in DOWNLOADS:
            size, seconds = fetch(f"{settings.portal_url}{path}")
            rate = f"{rows / seconds:>12,.0f}" if name != "datapackage" else f"{'-':>12}"
            print(f"{name:<12} {seconds:8.2f} {rate} {size / 1e6:9.1f} {size / 1e6 / seconds:7.1f}")
            print(f"{'':<12} portal peak RSS so far {server_peak_mb():,.0f} MB")


if __name__ == "__main__":
    main()
