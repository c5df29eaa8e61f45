"""Is the project's own Prefect server up? Answered without importing Prefect.

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
import sys
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
