"""End-to-end pipeline benchmark on a city-sized 311 extract (default 1,000,000 rows).

Builds the file by repeating the bundled 9,999 real rows with fresh SR numbers, starts a
real Datasette portal in a temporary folder, and times each stage of one publish.
Prints the machine, rows/s per stage, the time outside the stages (so the stage times
add up to the total), and peak memory of both processes: the pipeline and the portal.
Run: `.venv/bin/python benchmarks/bench_pipeline.py [ROWS]`.
"""

from __future__ import annotations

import os
import platform
import resource
import socket
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

PROJECT = Path(__file__).resolve().parents[1]
CSV = PROJECT / "data" / "la311_service_requests" / "MyLA311_Service_Request_Data_2017_Subset.csv"


def build_csv(rows: int, path: Path) -> None:
    header = CSV.open(encoding="utf-8").readline().strip().split(",")
    base = pacsv.read_csv(
        CSV, convert_options=pacsv.ConvertOptions(column_types={h: pa.string() for h in header})
    )
    repeats = -(-rows // base.num_rows)
    table = pa.concat_tables([base] * repeats).slice(0, rows)
    numbers = pc.cast(pa.array(range(rows)), pa.string())
    table = table.set_column(0, "SRNumber", pc.binary_join_element_wise("1-", numbers, ""))
    pacsv.write_csv(table, path)


def machine() -> str:
    """CPU model, cores and memory, from /proc where there is one."""
    model, memory = platform.processor() or platform.machine(), ""
    cpuinfo, meminfo = Path("/proc/cpuinfo"), Path("/proc/meminfo")
    if cpuinfo.is_file():
        names = [line for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        model = names[0].split(":", 1)[1].strip() if names else model
    if meminfo.is_file():
        kib = int(meminfo.read_text().split()[1])
        memory = f", {kib / 1024**2:.1f} GiB RAM"
    return f"{model}, {os.cpu_count()} cores{memory}, Python {platform.python_version()}"


def peak_rss_mib(pid: int) -> float | None:
    """Peak resident memory of a live process (Linux VmHWM), or None elsewhere."""
    status = Path(f"/proc/{pid}/status")
    if not status.is_file():
        return None
    for line in status.read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        var = tmp_path / "var"
        os.environ.update({"CIVICFLOW_PROJECT_DIR": str(PROJECT), "CIVICFLOW_VAR_DIR": str(var)})
        src = tmp_path / "big.csv"
        t0 = time.perf_counter()
        build_csv(rows, src)
        print(
            f"built {rows:,} rows ({src.stat().st_size / 1e6:,.0f} MB) in {time.perf_counter() - t0:.1f} s"
        )

        from civicflow import pipeline
        from civicflow.portals import server
        from civicflow.settings import load_settings
        from civicflow.spec import find_dataset

        print(f"machine: {machine()}")
        port = free_port()
        os.environ["CIVICFLOW_PORTAL_URL"] = f"http://127.0.0.1:{port}"
        settings = load_settings()
        proc = server.start(settings, port, quiet=True)
        try:
            server.wait_until_up(settings.portal_url, timeout=60)
            spec = find_dataset(settings.datasets_dir, "la311_service_requests")
            timings: dict[str, float] = {}

            def timed(name, fn):
                def run(*args, **kwargs):
                    start = time.perf_counter()
                    try:
                        return fn(*args, **kwargs)
                    finally:
                        timings[name] = time.perf_counter() - start

                return run

            start = time.perf_counter()
            outcome = pipeline.run_dataset(settings, spec.id, src, spec=spec, wrap=timed)
            total = time.perf_counter() - start
            print(f"outcome: {outcome.outcome}: {outcome.reason[:200]}")
            for name, seconds in timings.items():
                print(f"  {name:<12} {seconds:7.2f} s  {rows / seconds:>12,.0f} rows/s")
            # Ledger writes and hand-offs between stages: shown so the lines add up.
            print(f"  {'(between)':<12} {total - sum(timings.values()):7.2f} s")
            print(f"  {'total':<12} {total:7.2f} s  {rows / total:>12,.0f} rows/s")
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            portal = peak_rss_mib(proc.pid)
            portal_text = f"{portal:,.0f} MiB" if portal is not None else "unknown"
            print(f"peak RSS: pipeline {peak:,.0f} MiB, portal (Datasette) {portal_text}")
        finally:
            server.stop(proc)


if __name__ == "__main__":
    main()
