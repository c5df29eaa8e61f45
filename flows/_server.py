"""The project's own Prefect server: is it up, and starting/stopping it and a worker.
Answered and done without importing Prefect (its CLI runs in child processes).

A CLI call that finds it uses it (fast, and the run shows in the project's UI) instead
of starting Prefect's temporary server. ``make run`` records the server it starts in
``var/prefect/server.json``; a server started by hand on the default port is found by
probing it. Importing Prefect reads PREFECT_API_URL once, so the caller sets that
variable from the answer *before* its first Prefect import.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from civicflow.privatefs import write_private
from civicflow.settings import Settings

log = logging.getLogger("civicflow.flows.server")

DEFAULT_API_URL = "http://127.0.0.1:4200/api"
#: "0" turns detection off (the test suite: never run into a developer's live server)
DETECT_ENV = "CIVICFLOW_PROJECT_SERVER"
#: a live local server answers in milliseconds; a dead port refuses at once
PROBE_TIMEOUT_S = 0.5


def server_file(settings: Settings) -> Path:
    return settings.var_dir / "prefect" / "server.json"


def record_server(settings: Settings, api_url: str, pid: int) -> Path:
    """Note the server this project started (for ``project_server_url``)."""
    path = server_file(settings)
    settings.private_dir(path.parent)
    write_private(path, json.dumps({"api_url": api_url, "pid": pid}))
    return path


def is_healthy(api_url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True when ``{api_url}/health`` answers 200 (Prefect's own liveness endpoint)."""
    try:
        response = httpx.get(f"{api_url.rstrip('/')}/health", timeout=timeout)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def _recorded_url(settings: Settings) -> str | None:
    try:
        data = json.loads(server_file(settings).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    url = data.get("api_url") if isinstance(data, dict) else None
    return url if isinstance(url, str) and url else None


def project_server_url(settings: Settings) -> str | None:
    """The API URL of the project's running Prefect server, or None when none is up.

    Tries the recorded server first, then the default port; a stale record (server
    gone) falls through to the probe.
    """
    candidates = [u for u in (_recorded_url(settings), DEFAULT_API_URL) if u]
    for url in dict.fromkeys(candidates):
        if is_healthy(url):
            log.debug("using the project's Prefect server at %s", url)
            return url
    return None


def use_project_server(settings: Settings) -> str | None:
    """Point this process's Prefect at the project's server when one is up and the
    environment names none; returns the API URL in use (None: Prefect's temporary one).

    Call before the first ``import prefect`` in the process: once Prefect is imported
    (an embedding process, a test harness) its settings stand and nothing changes here.
    """
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    if "prefect" in sys.modules or os.environ.get(DETECT_ENV) == "0":
        return None
    url = project_server_url(settings)
    if url is not None:
        os.environ["PREFECT_API_URL"] = url
    return url


# -- processes: what `make run` (civicflow run) and the integration test start ------


def prefect_command() -> str:
    """The ``prefect`` CLI of this interpreter's environment (the venv's)."""
    return str(Path(sys.executable).parent / "prefect")


def spawn(args: list[str], env: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """``args`` in a session of its own (``stop`` ends its children too), output to
    ``log_path``."""
    with log_path.open("ab") as out:
        return subprocess.Popen(
            args,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def launch_server(
    port: int, env: Mapping[str, str], log_path: Path
) -> tuple[subprocess.Popen[bytes], str]:
    """``prefect server start`` on 127.0.0.1:``port`` (not waited for); the process and
    its API URL. ``env`` decides where its state lives (PREFECT_HOME; the project's is
    var/prefect)."""
    api_url = f"http://127.0.0.1:{port}/api"
    args = [prefect_command(), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    return spawn(args, {**env, "PREFECT_API_URL": api_url}, log_path), api_url


def wait_healthy(
    proc: subprocess.Popen[bytes], api_url: str, log_path: Path, timeout: float = 180
) -> None:
    """Until the server answers; stopped, and RuntimeError with its log's tail, if it
    dies or is not up in ``timeout`` s (a fresh database is migrated first: a minute
    on a busy 2-core machine)."""
    deadline = time.monotonic() + timeout
    while not is_healthy(api_url, timeout=2):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"Prefect server {api_url} did not come up; its log:\n{tail}")
        time.sleep(0.5)
    log.info("Prefect server up at %s", api_url)


def start_server(
    port: int, env: Mapping[str, str], log_path: Path, timeout: float = 180
) -> tuple[subprocess.Popen[bytes], str]:
    """``launch_server`` and ``wait_healthy``: a server ready for requests."""
    proc, api_url = launch_server(port, env, log_path)
    wait_healthy(proc, api_url, log_path, timeout)
    return proc, api_url


def start_worker(
    pool: str,
    api_url: str,
    env: Mapping[str, str],
    log_path: Path,
    *,
    name: str | None = None,
    limit: int | None = None,
) -> subprocess.Popen[bytes]:
    """A process worker on ``pool``; each flow run it starts inherits ``env`` (the
    project's portal, secrets and folders). Several workers on one pool share its runs
    (on this machine or others pointed at the same API); ``limit`` caps how many flow
    runs this one runs at once, so the rest wait for a worker with room."""
    args = [prefect_command(), "worker", "start", "--pool", pool]
    if name:
        args += ["--name", name]
    if limit:
        args += ["--limit", str(limit)]
    return spawn(args, {**env, "PREFECT_API_URL": api_url}, log_path)


def stop(proc: subprocess.Popen[bytes], grace: float = 20) -> None:
    """SIGTERM the process group, SIGKILL what is left after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue
