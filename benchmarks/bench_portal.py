"""Publish throughput to a real local portal (default 200,000 rows x 33 columns).

The rows are the bundled 9,999 LA 311 requests, extracted and typed by civicflow's own
extract step, repeated with fresh SR numbers. Starts a private portal in a temporary
folder (a Datasette, or with ``--portal socrata`` the Socrata test server over TLS as
its own process, ``python -m tests.socrata``), publishes once (new table) and once more
(replace), then applies a change set of 1 % of the rows (``apply_changes``), and prints
rows/s.

Run: `.venv/bin/python benchmarks/bench_portal.py [ROWS] [--portal socrata] [--batch-rows N]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import requests

from civicflow import published
from civicflow.pipeline import table_metadata
from civicflow.portals import Portal, RowChanges, get_portal, server
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def datasette(tmp: Path, batch_rows: int) -> Iterator[tuple[Settings, Portal]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings(project_dir=PROJECT, var_dir=tmp / "var", portal_url=url, env={})
    proc = server.start(settings, port, quiet=True)
    try:
        server.wait_until_up(url, timeout=60, proc=proc)
        portal = get_portal("datasette", settings)
        portal.batch_rows = batch_rows  # type: ignore[attr-defined]
        yield settings, portal
    finally:
        server.stop(proc)


@contextmanager
def socrata(tmp: Path) -> Iterator[tuple[Settings, Portal]]:
    """The Socrata test server as a process over TLS, with its test credentials."""
    sys.path.insert(0, str(PROJECT))  # the test server lives in tests/, not in the package
    from tests.socrata.fixtures import APP_TOKEN, KEY_ID, KEY_SECRET

    port, tls = free_port(), tmp / "tls"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.socrata", "--port", str(port), "--tls", str(tls)],
        cwd=PROJECT,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(PROJECT)},
    )
    try:
        url = f"https://127.0.0.1:{port}"
        _wait_for(url, tls / "ca.pem", proc)
        env = {
            "CIVICFLOW_SOCRATA_DOMAIN": url,
            "CIVICFLOW_SOCRATA_KEY_ID": KEY_ID,
            "CIVICFLOW_SOCRATA_KEY_SECRET": KEY_SECRET,
            "CIVICFLOW_SOCRATA_APP_TOKEN": APP_TOKEN,
            "CIVICFLOW_SOCRATA_CA_BUNDLE": str(tls / "ca.pem"),
        }
        settings = Settings(project_dir=PROJECT, var_dir=tmp / "var", env=env)
        yield settings, get_portal("socrata", settings)
    finally:
        proc.terminate()
        proc.wait(10)


def _wait_for(url: str, ca: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the Socrata test server exited")
        try:
            requests.get(f"{url}/api/views/none-none.json", verify=str(ca), timeout=2)
            return
        except (requests.ConnectionError, OSError):
            time.sleep(0.2)
    raise RuntimeError(f"the Socrata test server did not answer on {url}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", type=int, nargs="?", default=200_000)
    parser.add_argument("--portal", choices=("datasette", "socrata"), default="datasette")
    parser.add_argument("--batch-rows", type=int, default=DEFAULT_BATCH_ROWS)
    args = parser.parse_args()
    # civicflow's progress lines only: httpx and socrata-py log one line per request.
    logging.basicConfig(level=logging.WARNING, format="  %(message)s")
    logging.getLogger("civicflow").setLevel(logging.INFO)

    with tempfile.TemporaryDirectory() as tmp:
        started = (
            socrata(Path(tmp))
            if args.portal == "socrata"
            else datasette(Path(tmp), args.batch_rows)
        )
        with started as (settings, portal):
            frame, fields = city_frame(settings, args.rows)
            spec = find_dataset(settings.datasets_dir, DATASET)
            print(f"{args.portal}: {len(frame):,} rows x {len(frame.columns)} columns")
            run(portal, frame, fields, spec)


def run(portal: Portal, frame: pd.DataFrame, fields: list, spec: Any) -> None:
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
    print(f"metadata   change={relabel.change} in {seconds:.3f} s (new version, no rows uploaded)")
    upsert_one_percent(portal, frame, fields, spec, edited)


def upsert_one_percent(
    portal: Portal, frame: pd.DataFrame, fields: list, spec: Any, metadata: Any
) -> None:
    """1 % of the rows changed (every 100th), applied by key as one new version."""
    changed = frame.index % 100 == 0
    frame.loc[changed, "request_source"] = "upsert"
    keys = frame.loc[[], spec.primary_key]
    changes = RowChanges(upserts=frame.loc[changed].reset_index(drop=True), deletes=keys)
    started = time.perf_counter()
    result = portal.apply_changes(
        DATASET,
        changes,
        fields=fields,
        primary_key=spec.primary_key,
        version=published.content_version(frame),
        run_id="bench-upsert",
        metadata=metadata,
    )
    seconds = time.perf_counter() - started
    print(
        f"upsert 1 % {result.upserted:>10,} rows {seconds:7.2f} s "
        f"{len(changes) / seconds:>10,.0f} rows/s ({result.rows:,} rows live after)"
    )


if __name__ == "__main__":
    main()
