"""Processes of the scale benchmark: measured child commands, the portal, progress,
and the portal load test.

- ``run_measured``: a command in its own session with its output in a log file; wall
  time, exit code, and peak RSS two ways: the process's own ``VmHWM`` from /proc
  (sampled every 0.1 s; it only grows, so the last sample is the peak) and
  ``wait4``'s ``ru_maxrss`` (the largest of the process and the children it waited
  for, e.g. Prefect's temporary server), and the check workers' (the run's
  ``multiprocessing`` children, each one's own ``VmHWM``): the pipeline's memory is the
  process's and its workers' together. Whatever of its session is left is stopped.
- ``Portal``: ``civicflow portal serve`` as the product starts it, in the project's
  environment; the Datasette process it runs is found among its children for its
  ``VmHWM``.
- ``Progress``: one updating line on a terminal (stderr a tty and ``CI`` unset),
  nothing elsewhere.
- ``load_test``: ``clients`` threads, each with its own HTTP connection, share a fixed
  list of requests (filtered JSON table queries and filtered CSV exports); latencies
  from request to last byte, percentiles per kind, requests/s over the whole run.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from scale_report import latency_summary

# -- /proc ------------------------------------------------------------------------


def vmhwm_mib(pid: int) -> float | None:
    """Peak resident memory of a live process (Linux VmHWM), or None."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) a live process has used so far, or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # fields[0] is the state, field 3 of stat(5)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(entry))
    return found


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        found += kids
        todo += kids
    return found


def sample_workers(pid: int, peaks: dict[int, float], cpu: dict[int, float]) -> None:
    """Record the VmHWM and CPU seconds of each ``multiprocessing`` process under ``pid``
    (check workers); both only grow, so the last sample is the nearest to the end."""
    for child in descendants(pid):
        if "multiprocessing" in cmdline(child):
            peaks[child] = max(peaks.get(child, 0.0), vmhwm_mib(child) or 0.0)
            cpu[child] = max(cpu.get(child, 0.0), cpu_s(child) or 0.0)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- progress ---------------------------------------------------------------------


def interactive() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")


class Progress:
    """``with Progress("1M: publish"):`` shows the step and its seconds on a terminal."""

    def __init__(self, what: str) -> None:
        self.what, self.show = what, interactive()
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.result = ""

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            took = time.monotonic() - self.started
            print(f"\r  {self.what} … {took:,.0f} s ", end="", file=sys.stderr, flush=True)

    def __enter__(self) -> Progress:
        if self.show:
            print(f"  {self.what} …", end="", file=sys.stderr, flush=True)
            self._thread = threading.Thread(target=self._tick, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.show:
            took = time.monotonic() - self.started
            tail = f": {self.result}" if self.result else ""
            print(f"\r  {self.what} … {took:,.1f} s{tail}\033[K", file=sys.stderr, flush=True)


# -- measured commands ------------------------------------------------------------


def _stop_session(pgid: int, grace: float = 10) -> None:
    """Whatever is left of a finished command's session: SIGTERM, then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.1)


def run_measured(
    command: Sequence[str],
    env: Mapping[str, str],
    log: Path,
    *,
    cwd: Path | None = None,
    timeout: float = 7200,
) -> dict[str, Any]:
    """Run ``command`` to its end; wall_s, exit, peak RSS (own and tree) and output."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(command),
            env=dict(env),
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        peak = 0.0
        workers: dict[int, float] = {}
        workers_cpu: dict[int, float] = {}
        own_cpu = 0.0
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, vmhwm_mib(proc.pid) or 0.0)
            own_cpu = cpu_s(proc.pid) or own_cpu  # its own, without children; lags ≤ 0.1 s
            sample_workers(proc.pid, workers, workers_cpu)
            if time.perf_counter() - started > timeout and not timed_out:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
            time.sleep(0.1)
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    _stop_session(proc.pid)
    output = log.read_text(errors="replace")
    return {
        "wall_s": round(wall, 3),
        "exit": proc.returncode,
        "timed_out": timed_out,
        "peak_rss_mib": round(peak, 1) if peak else None,
        "workers_peak_rss_mib": round(sum(workers.values()), 1),
        "with_workers_peak_rss_mib": round(peak + sum(workers.values()), 1) if peak else None,
        "tree_peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "cpu_s": round(own_cpu, 1),
        "workers_cpu_s": round(sum(workers_cpu.values()), 1),
        "log": str(log),
        "output": output,
    }


# -- the portal -------------------------------------------------------------------


class Portal:
    """``civicflow portal serve --port PORT`` in ``env``'s project; Datasette's VmHWM."""

    def __init__(self, civicflow: str, env: Mapping[str, str], port: int, log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [civicflow, "portal", "serve", "--port", str(port)],
                env=dict(env),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._datasette: int | None = None

    def wait_up(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"portal exited with code {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/-/versions.json", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"portal at {self.url} not up within {timeout:.0f} s")

    def datasette_pid(self) -> int | None:
        if self._datasette is None:
            found = [p for p in children(self.proc.pid) if "datasette" in cmdline(p)]
            self._datasette = found[0] if found else None
        return self._datasette

    def peak_rss_mib(self) -> float | None:
        pid = self.datasette_pid()
        value = vmhwm_mib(pid) if pid is not None else None
        return round(value, 1) if value is not None else None

    def cpu_s(self) -> float | None:
        pid = self.datasette_pid()
        return cpu_s(pid) if pid is not None else None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # the serve command stops Datasette
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(30)
        _stop_session(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.wait(10)

    def __enter__(self) -> Portal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- the load test ----------------------------------------------------------------


def plan_requests(
    database: str,
    table: str,
    pairs: Sequence[tuple[str, int, int]],
    columns: tuple[str, str],
    *,
    requests: int,
    csv_every: int,
    seed: int,
) -> list[tuple[str, str]]:
    """``requests`` (kind, path): every ``csv_every``-th a filtered CSV export, the rest
    filtered JSON table queries with their count, filters drawn from ``pairs`` by seed."""
    rng = random.Random(seed)
    out = []
    for n in range(requests):
        value, number, _ = rng.choice(list(pairs))
        query = {columns[0]: value, columns[1]: str(number)}
        if csv_every and n % csv_every == csv_every - 1:
            out.append(("csv", f"/{database}/{table}.csv?{urlencode({**query, '_stream': 'on'})}"))
        else:
            params = {**query, "_size": "100", "_extra": "count"}
            out.append(("json", f"/{database}/{table}.json?{urlencode(params)}"))
    return out


def load_test(
    base_url: str,
    plan: Sequence[tuple[str, str]],
    *,
    clients: int = 20,
    warmup: int = 0,
    timeout: float = 900,
) -> dict[str, Any]:
    """Send ``plan`` from ``clients`` threads; latency percentiles per kind, requests/s.

    The first ``warmup`` requests of the plan go first and are not counted; the rest are
    timed."""
    lock = threading.Lock()
    results: list[tuple[str, float, int, int]] = []

    def run(items: Sequence[tuple[str, str]], record: bool) -> float:
        counter = itertools.count()

        def client() -> None:
            with httpx.Client(base_url=base_url, timeout=timeout) as http:
                while True:
                    with lock:
                        n = next(counter)
                    if n >= len(items):
                        return
                    kind, path = items[n]
                    t = time.perf_counter()
                    size, status = 0, 0
                    try:
                        with http.stream("GET", path) as response:
                            for chunk in response.iter_raw(1 << 16):
                                size += len(chunk)
                            status = response.status_code
                    except httpx.HTTPError:
                        status = -1
                    took = time.perf_counter() - t
                    if record:
                        with lock:
                            results.append((kind, took, status, size))

        threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.perf_counter() - started

    if warmup:
        run(plan[:warmup], record=False)
    wall = run(plan[warmup:], record=True)
    out: dict[str, Any] = {
        "clients": clients,
        "requests": len(results),
        "warmup_requests": warmup,
        "wall_s": round(wall, 3),
        "requests_per_s": round(len(results) / wall, 1) if wall else None,
    }
    errors = 0
    for kind in sorted({k for k, _, _, _ in results}):
        ok = [s for k, s, status, _ in results if k == kind and status == 200]
        bad = sum(1 for k, _, status, _ in results if k == kind and status != 200)
        errors += bad
        summary = latency_summary(ok, bad)
        summary["mean_bytes"] = round(
            sum(b for k, _, status, b in results if k == kind and status == 200) / max(len(ok), 1)
        )
        statuses = sorted({status for k, _, status, _ in results if k == kind and status != 200})
        if statuses:
            summary["error_statuses"] = statuses
        out[kind] = summary
    out["errors"] = errors
    return out
