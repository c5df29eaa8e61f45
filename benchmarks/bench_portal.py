"""Publish throughput and filtered-query latency of a real local portal.

The rows are synthetic LA 311 requests from ``civicflow bench generate --dataset
la311_service_requests --rows ROWS --seed 1`` (real rows drawn at random with fresh
distinct keys; written once to var/bench/portal/ and reused), extracted and typed by
civicflow's own extract step. Starts a private portal in a temporary folder (a
Datasette, or with ``--portal socrata`` the Socrata test server over TLS as its own
process, ``python -m tests.socrata``), publishes once (new table) and once more
(replace), then republishes unchanged, edits the title and applies a change set of
1 % of the rows (``apply_changes``), printing seconds and rows/s.

For the Datasette portal it also prints the portal process's peak RSS (sampled during
each step, and VmHWM: the peak since it started), and times filtered queries the way
residents send them: ``--clients`` concurrent clients (default 20) send ``--requests``
requests in all to the table's JSON API filtered by request type and council
district (pairs drawn from the published rows, so common and rare ones come as often
as in the data), then the same with the filtered row count (``_extra=count``);
p50/p95/p99 and requests/s. ``--no-queries`` skips them.

Run: `.venv/bin/python benchmarks/bench_portal.py [ROWS] [--portal socrata] [--batch-rows N]
[--source FILE] [--clients 20] [--requests 400]`. Timings depend on what else the machine
runs; say so with the numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import requests

from civicflow import published, synth
from civicflow.pipeline import table_metadata
from civicflow.portals import Portal, RowChanges, get_portal, server
from civicflow.portals.datasette import DEFAULT_BATCH_ROWS
from civicflow.settings import Settings
from civicflow.sources import extract
from civicflow.spec import find_dataset

PROJECT = Path(__file__).resolve().parents[1]
DATASET = "la311_service_requests"
SEED = 1


@dataclasses.dataclass
class Started:
    settings: Settings
    portal: Portal
    #: the portal's process id when it runs here (Datasette), for its memory
    pid: int | None = None


def generated_file(settings: Settings, rows: int) -> Path:
    """The generated source file of ``rows`` rows (seed 1), made once under var/bench/portal/."""
    target = PROJECT / "var" / "bench" / "portal" / f"{DATASET}-{rows}-{SEED}.csv"
    if not target.is_file():
        spec = find_dataset(settings.datasets_dir, DATASET)
        started = time.perf_counter()
        synth.generate(spec, settings, rows, SEED, target)
        print(f"generated {target} in {time.perf_counter() - started:.1f} s")
    return target


def city_frame(settings: Settings, rows: int, source: Path | None) -> tuple[pd.DataFrame, list]:
    spec = find_dataset(settings.datasets_dir, DATASET)
    path = source or generated_file(settings, rows)
    started = time.perf_counter()
    frame = extract(spec, settings, "bench", source_path=path).frame.reset_index(drop=True)
    print(f"extracted {len(frame):,} rows from {path} in {time.perf_counter() - started:.1f} s")
    fields = spec.published_fields()
    return frame[[f.name for f in fields]], fields


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def datasette(tmp: Path, batch_rows: int) -> Iterator[Started]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings(project_dir=PROJECT, var_dir=tmp / "var", portal_url=url, env={})
    proc = server.start(settings, port, quiet=True)
    try:
        server.wait_until_up(url, timeout=60, proc=proc)
        portal = get_portal("datasette", settings)
        portal.batch_rows = batch_rows  # type: ignore[attr-defined]
        yield Started(settings, portal, proc.pid)
    finally:
        server.stop(proc)


@contextmanager
def socrata(tmp: Path) -> Iterator[Started]:
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
        yield Started(settings, get_portal("socrata", settings))
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


# -- memory -------------------------------------------------------------------------


def _status_kib(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


@contextmanager
def peak_rss(pid: int | None) -> Iterator[dict[str, int]]:
    """Samples ``pid``'s resident memory every 20 ms; ``out['peak_kib']`` afterwards."""
    out: dict[str, int] = {"peak_kib": 0}
    if pid is None:
        yield out
        return
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            out["peak_kib"] = max(out["peak_kib"], _status_kib(pid, "VmRSS") or 0)
            stop.wait(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        stop.set()
        thread.join()


def _mib(kib: int | None) -> str:
    return "?" if kib is None else f"{kib / 1024:,.0f} MiB"


# -- the run --------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", type=int, nargs="?", default=200_000)
    parser.add_argument("--portal", choices=("datasette", "socrata"), default="datasette")
    parser.add_argument("--batch-rows", type=int, default=DEFAULT_BATCH_ROWS)
    parser.add_argument("--source", type=Path, help="a source file instead of the generated one")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--no-queries", action="store_true", help="skip the query latency check")
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
        with started as up:
            frame, fields = city_frame(up.settings, args.rows, args.source)
            spec = find_dataset(up.settings.datasets_dir, DATASET)
            print(f"{args.portal}: {len(frame):,} rows x {len(frame.columns)} columns")
            pairs = _filter_pairs(frame)
            run(up, frame, fields, spec)
            if up.pid is not None:
                print(f"portal peak RSS since start (VmHWM): {_mib(_status_kib(up.pid, 'VmHWM'))}")
                if not args.no_queries:
                    url = f"{up.settings.portal_url}/{up.settings.portal_database}/{DATASET}.json"
                    for label, extra in (("filtered", {}), ("filtered+count", {"_extra": "count"})):
                        query_latency(url, pairs, extra, args.clients, args.requests, label)


def run(up: Started, frame: pd.DataFrame, fields: list, spec: Any) -> None:
    portal = up.portal

    def timed_publish(run_id: str, metadata: Any) -> tuple[Any, float, int]:
        version = published.content_version(frame)  # the pipeline's work, not the portal's
        with peak_rss(up.pid) as memory:
            started = time.perf_counter()
            result = portal.publish(
                DATASET,
                frame,
                fields=fields,
                primary_key=spec.primary_key,
                version=version,
                run_id=run_id,
                metadata=metadata,
            )
            seconds = time.perf_counter() - started
        return result, seconds, memory["peak_kib"]

    for attempt in ("new table", "replace"):
        frame["request_source"] = attempt  # a different version each time
        result, seconds, peak = timed_publish(f"bench-{attempt}", table_metadata(spec))
        print(
            f"{attempt:<10} {result.rows:>10,} rows {seconds:7.2f} s "
            f"{result.rows / seconds:>10,.0f} rows/s"
            + (f"  portal peak RSS {_mib(peak)}" if up.pid else "")
        )
    again, seconds, _ = timed_publish("bench-unchanged", table_metadata(spec))
    print(f"unchanged  changed={again.changed} in {seconds:.3f} s")
    # A title edit alone: a new version with the live rows, nothing uploaded.
    edited = dataclasses.replace(table_metadata(spec), title="Edited title")
    relabel, seconds, _ = timed_publish("bench-metadata", edited)
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
    version = published.content_version(frame)
    started = time.perf_counter()
    result = portal.apply_changes(
        DATASET,
        changes,
        fields=fields,
        primary_key=spec.primary_key,
        version=version,
        run_id="bench-upsert",
        metadata=metadata,
    )
    seconds = time.perf_counter() - started
    print(
        f"upsert 1 % {result.upserted:>10,} rows {seconds:7.2f} s "
        f"{len(changes) / seconds:>10,.0f} rows/s ({result.rows:,} rows live after)"
    )


# -- filtered queries ---------------------------------------------------------------


def _filter_pairs(frame: pd.DataFrame, n: int = 10_000) -> list[tuple[str, int]]:
    """(request type, council district) of random published rows: filters as common or
    rare as they are in the data."""
    rows = frame[["request_type", "cd"]].dropna().sample(n=n, replace=True, random_state=SEED)
    return [(str(t), int(c)) for t, c in rows.itertuples(index=False)]


def query_latency(
    url: str,
    pairs: list[tuple[str, int]],
    extra: dict[str, str],
    clients: int,
    total: int,
    label: str,
) -> None:
    """``clients`` threads send ``total`` filtered requests between them, each waiting for
    its answer before the next (a closed loop, like the make bench load test)."""
    picks = random.Random(SEED)
    work = [picks.choice(pairs) for _ in range(total)]
    lock = threading.Lock()
    latencies: list[float] = []
    failures: list[str] = []

    def client(index: int) -> None:
        with httpx.Client(timeout=60) as http:
            for request_type, cd in work[index::clients]:
                params = {"request_type": request_type, "cd": str(cd), "_size": "100", **extra}
                started = time.perf_counter()
                response = http.get(url, params=params)
                took = time.perf_counter() - started
                with lock:
                    if response.status_code == 200:
                        latencies.append(took)
                    else:
                        failures.append(f"{response.status_code} {response.text[:100]}")

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(client, range(clients)))
    wall = time.perf_counter() - started
    print(_latency_line(label, latencies, failures, wall, clients))


def _latency_line(
    label: str, latencies: list[float], failures: list[str], wall: float, clients: int
) -> str:
    if not latencies:
        return f"{label}: every request failed: {failures[:3]}"
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    ms: Callable[[float], str] = lambda s: f"{s * 1000:,.0f} ms"  # noqa: E731
    return (
        f"{label:<15} {len(latencies):>5} requests, {clients} clients: "
        f"{len(latencies) / wall:6.1f} req/s  p50 {ms(cuts[49])}  p95 {ms(cuts[94])}  "
        f"p99 {ms(cuts[98])}  max {ms(max(latencies))}"
        + (f"  ({len(failures)} failed: {failures[0]})" if failures else "")
    )


if __name__ == "__main__":
    main()
