"""The Dask path (issue 13, item 6): a dataset's partitions validated and protected as
Prefect tasks on prefect-dask's DaskTaskRunner (a LocalCluster of 2 worker processes)
give the serial path's reports, quietly, and leave nothing running."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from civicflow import synth
from civicflow.privacy import protect
from civicflow.quality import QualityReport, quarantine_bad_rows, validate
from civicflow.settings import Settings, load_settings
from civicflow.sources import extract
from civicflow.spec import find_dataset
from flows.partitioned import run_partitioned

LA311 = "la311_service_requests"
ROWS = 2_000


def _quality(report: QualityReport | None) -> dict[str, Any]:
    assert report is not None
    data = report.to_dict()
    for key in ("duration_s", "run_id", "quarantine_path"):
        data.pop(key)
    return data


def _privacy(report: Any) -> dict[str, Any]:
    data = report.to_dict()
    data.pop("scan_seconds")
    data.pop("generated_at")
    return data


@pytest.fixture
def source(project: Settings, project_dir: Path, tmp_path: Path) -> Path:
    """Generated 311 rows with a key repeated across partitions, a bad status and an
    e-mail in free text; the spec quarantines bad rows, so both stages run."""
    spec_path = project.datasets_dir / f"{LA311}.yaml"
    text = spec_path.read_text(encoding="utf-8")
    spec_path.write_text(text + "on_bad_rows: {action: quarantine, max_share: 0.05}\n")
    path = tmp_path / "la311.csv"
    real = load_settings(project_dir)  # the bundled data the generator draws from
    synth.generate(find_dataset(real.datasets_dir, LA311), real, ROWS, seed=21, out=path)
    types = {name: pa.string() for name in pacsv.read_csv(path).column_names}
    table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=types))
    columns = {name: table[name].to_pylist() for name in table.column_names}
    columns["SRNumber"][ROWS - 2] = columns["SRNumber"][4]  # rows 5 and 1999
    columns["Status"][99] = "Pending Review"
    columns["ActionTaken"][1499] = "called back maria.lopez@example.com"
    pacsv.write_csv(pa.table(columns), path)
    return path


def test_dask_partitions_give_the_serial_reports(
    prefect_harness: object,
    project: Settings,
    source: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.delenv("CIVICFLOW_DASK_ADDRESS", raising=False)
    spec = find_dataset(project.datasets_dir, LA311)
    before = {p.pid for p in psutil.Process().children(recursive=True)}

    run = run_partitioned(LA311, str(source), partitions=4, workers=2)

    # the serial path: validate, quarantine (as the spec asks), protect
    ext = extract(spec, project, "serial", source)
    serial = validate(spec, ext, project.expectations_dir)
    held = quarantine_bad_rows(spec, ext, serial, project)
    assert held is not None and held.accepted and held.frame is not None and held.rows == 3
    protected = protect(spec, held.frame, project)

    assert run.partitions == 4 and run.report is not None and run.privacy is not None
    key = next(c for c in run.report.checks if c.name == "primary-key")
    assert [e["row"] for e in key.examples] == [5, ROWS - 1]  # in the first and last partition
    assert _quality(run.report) == _quality(serial)
    assert run.report.quarantined == serial.quarantined == 3
    assert _privacy(run.privacy) == _privacy(protected.report)
    assert run.privacy.blocked and run.outcome == "rejected"
    assert run.frame is not None
    pd.testing.assert_frame_equal(run.frame, protected.frame)
    # the reports are where the serial stages write them
    assert run.report_path is not None and run.report_path.is_file()
    assert run.privacy_report_path is not None and run.privacy_report_path.is_file()

    # quiet: no dashboard, no Dask lines (workers' own output included), no big-graph warning
    records = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert not [r.getMessage() for r in records if r.name.startswith("distributed")]
    logged = "\n".join(r.getMessage() for r in records).lower()
    assert "dashboard" not in logged and "large graph" not in logged
    out = capfd.readouterr()
    assert "distributed." not in out.out + out.err
    # and shut down: no worker, nanny or scheduler process left behind
    left = [
        p
        for p in psutil.Process().children(recursive=True)
        if p.pid not in before and p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    ]
    # (multiprocessing's own resource tracker stays with this process: not Dask's)
    assert not [p for p in left if "resource_tracker" not in " ".join(p.cmdline())], left
