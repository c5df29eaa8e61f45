"""The README's Socrata walkthrough, run as written (port and folders moved to the test's own)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
README = (PROJECT / "README.md").read_text()


def _walkthrough() -> str:
    block = README.split("<!-- socrata-walkthrough -->", 1)[1]
    return block.split("```sh", 1)[1].split("```", 1)[0]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_readme_socrata_walkthrough_publishes_to_the_test_server(tmp_path: Path) -> None:
    port = str(_free_port())
    script = _walkthrough().replace("8002", port).replace("var/socrata-test", str(tmp_path / "tls"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CIVICFLOW_", "SOCRATA_TEST_"))}
    env |= {"CIVICFLOW_VAR_DIR": str(tmp_path / "var"), "CIVICFLOW_PROJECT_DIR": str(PROJECT)}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert re.search(r"la311_service_requests: PUBLISHED", out), out
    assert "DRY RUN: nothing written" in out and "unchanged" in out, out
    state = list((tmp_path / "var" / "socrata").rglob("la311_service_requests.json"))
    assert len(state) == 1, "the four-by-four is kept as civicflow state"
