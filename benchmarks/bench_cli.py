"""Wall time of `civicflow publish la311_service_requests` on unchanged data, the way a
steward types it: with the project's Prefect server up (what `make run` starts) and
without it (each call then starts Prefect's temporary server).

Usage: python benchmarks/bench_cli.py [REPEATS]

Runs in a private var/ of its own (the project's datasets, suites and data), on free
ports; everything it starts is stopped at the end. The issue's target: under 5 s with
the server up.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).with_name("civicflow")
READY = "serving; Ctrl-C to stop"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(
        CIVICFLOW_PROJECT_DIR=str(PROJECT),
        CIVICFLOW_VAR_DIR=str(root / "var"),
        PREFECT_HOME=str(root / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        CIVICFLOW_PROJECT_SERVER="1",
    )
    return env


def serve(env: dict[str, str], port: int, prefect_port: int) -> subprocess.Popen[str]:
    """`civicflow run --serve` until it prints that it is serving (the job ran once)."""
    args = [str(CLI), "run", "--serve", "--port", str(port), "--prefect-port", str(prefect_port)]
    proc = subprocess.Popen(
        args, env=env, cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if READY in line:
            return proc
    raise RuntimeError(f"civicflow run --serve ended (exit {proc.wait()}) before serving")


def publish_wall(env: dict[str, str], port: int) -> float:
    args = [str(CLI), "publish", "la311_service_requests"]
    started = time.perf_counter()
    done = subprocess.run(
        args,
        env={**env, "CIVICFLOW_PORTAL_URL": f"http://127.0.0.1:{port}"},
        cwd=PROJECT,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0 or "UNCHANGED" not in done.stdout:
        raise RuntimeError(
            f"publish exit {done.returncode}: {done.stdout[-500:]}{done.stderr[-500:]}"
        )
    return wall


def describe(name: str, walls: list[float]) -> str:
    return (
        f"{name}: median {statistics.median(walls):.2f} s, min {min(walls):.2f} s, "
        f"max {max(walls):.2f} s over {len(walls)} calls"
    )


def main() -> int:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        env = environment(Path(tmp))
        port, prefect_port = free_port(), free_port()
        proc = serve(env, port, prefect_port)
        try:
            up = [publish_wall(env, port) for _ in range(repeats)]
            # The same calls told not to look for the project's server (the portal stays up).
            alone = {**env, "CIVICFLOW_PROJECT_SERVER": "0"}
            down = [publish_wall(alone, port) for _ in range(max(1, repeats // 2))]
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=120)
        print(describe("unchanged publish, project Prefect server up", up))
        print(f"  target < 5 s: {'met' if statistics.median(up) < 5 else 'NOT met'}")
        print(describe("unchanged publish, no server (Prefect's temporary server)", down))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
