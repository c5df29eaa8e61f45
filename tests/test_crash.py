"""A run killed outright (kill -9) is not lost: it shows as crashed, and the next run
of the dataset records it as failed; the portal keeps its last good version."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from civicflow.cli import app
from civicflow.ledger import Ledger
from civicflow.pipeline import run_dataset, spool_path
from tests.fixtures.portal import DatasetteServer, point_civicflow_at

DATASET = "la311_service_requests"
RUN_ONE = f"""
import sys
from civicflow.pipeline import run_dataset
from civicflow.settings import load_settings
run_dataset(load_settings(), {DATASET!r})
"""


def test_a_killed_run_shows_as_crashed_and_is_recorded_by_the_next(
    datasette_server: DatasetteServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = point_civicflow_at(datasette_server, tmp_path / "var", monkeypatch)
    ledger = Ledger(settings.ledger_path)
    proc = subprocess.Popen([sys.executable, "-c", RUN_ONE], env=dict(os.environ))
    deadline = time.monotonic() + 120
    while not ledger.unfinished(DATASET):
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "the run never recorded its start"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    [dead] = ledger.unfinished(DATASET)
    assert dead.state == "crashed"
    shown = CliRunner().invoke(app, ["runs", DATASET])
    assert shown.exit_code == 0, shown.output
    assert "crashed" in shown.output and f"pid {proc.pid}" in shown.output

    # as a streamed run killed mid-check leaves them: its checked rows, and another's
    left, other = (spool_path(settings, DATASET, run) for run in (dead.run_id, "other-run"))
    left.parent.mkdir(parents=True, exist_ok=True)
    left.write_bytes(b"checked rows")
    other.write_bytes(b"a live run's rows")

    after = run_dataset(settings, DATASET)
    assert after.outcome in ("published", "unchanged"), after.reason
    assert ledger.unfinished(DATASET) == []
    assert not left.exists() and other.exists()  # only the crashed run's rows go
    crashed = next(r for r in ledger.runs(DATASET) if r.run_id == dead.run_id)
    assert crashed.outcome == "failed" and crashed.reason.startswith("crashed:")
