"""The streaming run (issue 13, item 2): a large file checked and published a batch of
rows at a time gives what the whole-table run gives.

Runs on the real Datasette portal with ``CIVICFLOW_STREAM_MIN_BYTES=0`` (every CSV
streams) and small batches, against the default run into another table from another
var dir: the same outcome, reports, portal rows, version and Parquet copy. A run whose
checks fail, or whose file breaks half-way, leaves the live version as it was and no
staging table or spool file behind.
"""

from __future__ import annotations

import json
import pickle
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from civicflow import published, streaming
from civicflow.ledger import Ledger
from civicflow.pipeline import RunOutcome, run_dataset
from civicflow.portals import get_portal
from civicflow.settings import Settings
from civicflow.sources import can_read_batches, copy_input, read_batches, read_copy
from civicflow.spec import DatasetSpec, find_dataset
from civicflow.spec.models import PortalTarget
from tests.fixtures.portal import PROJECT_DIR, DatasetteServer, point_civicflow_at, unique_table

DATASET = "la311_service_requests"
CSV = PROJECT_DIR / "data" / DATASET / "MyLA311_Service_Request_Data_2017_Subset.csv"
BATCH = 1_500  # 9,999 rows: six full batches and a short one


def _spec(settings: Settings, table: str) -> DatasetSpec:
    spec = find_dataset(settings.datasets_dir, DATASET)
    return spec.model_copy(update={"portal": PortalTarget(kind="datasette", table=table)})


def _settings(
    server: DatasetteServer,
    var: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    stream: bool,
    workers: int = 1,
) -> Settings:
    monkeypatch.setenv("CIVICFLOW_STREAM_MIN_BYTES", "0" if stream else str(1 << 40))
    monkeypatch.setenv("CIVICFLOW_BATCH_ROWS", str(BATCH))
    monkeypatch.setenv("CIVICFLOW_CHECK_WORKERS", str(workers))
    return point_civicflow_at(server, var, monkeypatch)


def _run(
    server: DatasetteServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    source: Path,
    *,
    stream: bool,
    table: str | None = None,
    workers: int = 1,
) -> tuple[Settings, DatasetSpec, RunOutcome]:
    with monkeypatch.context() as mp:
        settings = _settings(server, tmp_path / name, mp, stream=stream, workers=workers)
        spec = _spec(settings, table or unique_table(name))
        return settings, spec, run_dataset(settings, DATASET, source, spec=spec)


def _report(path: Path | None) -> dict[str, Any]:
    assert path is not None
    data = json.loads(path.read_text())
    for volatile in ("duration_s", "scan_seconds", "generated_at", "run_id"):
        data.pop(volatile, None)
    return data


def _rows(server: DatasetteServer, table: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    while page := server.query(
        f'select * from "{table}" order by rowid limit 2000 offset {len(rows)}'
    ):
        rows += page
    return rows


def test_batches_of_a_csv_are_the_file_read_whole(project: Settings) -> None:
    spec = find_dataset(project.datasets_dir, DATASET)
    assert can_read_batches(spec)
    copy = copy_input(spec, project, "batches-test", CSV)
    whole = read_copy(spec, "batches-test", copy)
    for rows in (1_000, 4_999, whole.rows, whole.rows + 1):
        batches = list(read_batches(spec, "batches-test", copy, rows))
        assert [b.rows for b in batches[:-1]] == [rows] * (len(batches) - 1)
        assert pa.concat_tables([b.raw for b in batches]).equals(whole.raw)
        frame = pd.concat([b.frame for b in batches])
        pd.testing.assert_frame_equal(frame, whole.frame)  # row numbers kept


def test_a_batch_shipped_to_a_check_worker_arrives_whole(project: Settings) -> None:
    spec = find_dataset(project.datasets_dir, DATASET)
    copy = copy_input(spec, project, "ship-test", CSV)
    for batch in read_batches(spec, "ship-test", copy, 4_000):
        shipped = streaming._ship(spec, batch)
        assert shipped.shared  # the text columns travel once
        assert set(shipped.shared).isdisjoint(shipped.batch.raw.column_names)
        arrived = pickle.loads(pickle.dumps(shipped))
        rebuilt = streaming._unship(arrived)
        assert rebuilt.raw.equals(batch.raw)
        pd.testing.assert_frame_equal(rebuilt.frame, batch.frame)


def test_content_hash_over_batches_is_the_whole_tables() -> None:
    frame = pd.DataFrame({"k": range(10), "v": [f"x{i}" if i % 3 else None for i in range(10)]})
    hasher = published.ContentHasher()
    for start in range(0, 10, 3):
        hasher.update(frame.iloc[start : start + 3])
    assert hasher.hexdigest() == published.content_version(frame)
    with pytest.raises(ValueError, match="different columns or types"):
        hasher.update(frame.astype({"k": float}))


def test_row_hashes_tell_rows_apart_by_every_value() -> None:
    frame = pd.DataFrame(
        {
            "k": pd.array([1, 2, None, 2], dtype="Int64"),
            "v": pd.array(["a", None, "", "a"], dtype="str"),
            "t": pd.to_datetime(["2024-01-01", None, "2024-01-02", "2024-01-01"]),
        }
    )
    hashes = published.row_hashes(frame)
    assert hashes.dtype == "uint64" and len(hashes) == 4
    assert len(set(hashes[:3])) == 3  # a null, an empty text and a value differ
    assert hashes[1] != published.row_hashes(frame.fillna({"v": ""}))[1]
    assert (published.row_hashes(frame.iloc[2:]) == hashes[2:]).all()  # per row, not per batch
    # a column Arrow cannot hold (mixed Python objects) is still hashed, row by row
    mixed = pd.DataFrame({"o": [1, "a", None]})
    assert len(set(published.row_hashes(mixed))) == 3


@pytest.mark.parametrize("workers", [0, 1], ids=["in-process", "check-worker"])
def test_a_streamed_run_publishes_what_the_whole_table_run_does(
    datasette_server: DatasetteServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog,
    workers: int,
) -> None:
    with caplog.at_level("INFO", logger="civicflow"):
        settings, spec, streamed = _run(
            datasette_server, tmp_path, monkeypatch, "streamed", CSV, stream=True, workers=workers
        )
    whole_settings, whole_spec, whole = _run(
        datasette_server, tmp_path, monkeypatch, "whole", CSV, stream=False
    )
    assert streamed.outcome == whole.outcome == "published", (streamed.reason, whole.reason)
    assert streamed.reason == whole.reason
    assert any("checked 9,999 rows" in r.getMessage() for r in caplog.records)
    assert _report(streamed.report_path) == _report(whole.report_path)
    assert _report(streamed.privacy_report_path) == _report(whole.privacy_report_path)
    for key in ("rows_in", "rows_out", "critical_failed", "warning_failed", "privacy_findings"):
        assert getattr(streamed.record, key) == getattr(whole.record, key), key
    assert _rows(datasette_server, spec.table) == _rows(datasette_server, whole_spec.table)
    portal = get_portal("datasette", settings)
    live, whole_live = portal.current_version(spec.table), portal.current_version(whole_spec.table)
    assert live is not None and whole_live is not None
    assert (live.data_version, live.rows) == (whole_live.data_version, whole_live.rows)
    manifest, whole_manifest = (
        published.latest(settings, DATASET),
        published.latest(whole_settings, DATASET),
    )
    assert manifest is not None and whole_manifest is not None
    assert manifest.version == live.version and manifest.rows == 9_999
    pd.testing.assert_frame_equal(
        pd.read_parquet(manifest.path), pd.read_parquet(whole_manifest.path)
    )
    assert manifest.metadata is not None and whole_manifest.metadata is not None
    dictionary = manifest.metadata["extra"]["dictionary"]
    assert dictionary == whole_manifest.metadata["extra"]["dictionary"]  # empty counts too
    assert not list((settings.spool_dir / DATASET).glob("*"))  # moved into place
    assert portal.staging(spec.table) == []


def test_a_failed_streamed_run_leaves_the_live_version_and_nothing_staged(
    datasette_server: DatasetteServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = unique_table("keep")
    settings, spec, first = _run(
        datasette_server, tmp_path, monkeypatch, "v1", CSV, stream=True, table=table
    )
    assert first.outcome == "published"
    before = _rows(datasette_server, table)
    source = pd.read_csv(CSV, dtype=str, keep_default_na=False)
    # a key repeated across batches: a critical check fails, found only at the merge
    source.loc[9_000, "SRNumber"] = source.loc[10, "SRNumber"]
    bad = tmp_path / "duplicate.csv"
    source.to_csv(bad, index=False)
    # a new var dir: no kept copy, so the rows are staged while they are checked
    _, _, rejected = _run(
        datasette_server, tmp_path, monkeypatch, "v2", bad, stream=True, table=table
    )
    assert rejected.outcome == "rejected", rejected.reason
    assert "critical" in rejected.reason
    # a file that breaks in its last batch: rejected at extract, naming the line
    broken = tmp_path / "broken.csv"
    broken.write_text(CSV.read_text(encoding="utf-8") + "1-1,too,few\n", encoding="utf-8")
    _, _, cut = _run(
        datasette_server, tmp_path, monkeypatch, "v3", broken, stream=True, table=table
    )
    assert cut.outcome == "rejected" and "malformed row" in cut.reason, cut.reason
    assert "line 10001" in cut.reason
    portal = get_portal("datasette", settings)
    live = portal.current_version(table)
    assert live is not None and live.run_id == first.record.run_id
    assert _rows(datasette_server, table) == before
    assert portal.staging(table) == []
    for var in ("v2", "v3"):
        assert not list((tmp_path / var / "spool" / DATASET).glob("*"))


def test_a_check_worker_that_dies_fails_the_run_and_leaves_the_live_version(
    datasette_server: DatasetteServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = unique_table("worker")
    settings, spec, first = _run(
        datasette_server, tmp_path, monkeypatch, "v1", CSV, stream=True, table=table
    )
    assert first.outcome == "published", first.reason
    before = _rows(datasette_server, table)
    submit = streaming._Validator.submit

    def killing_the_worker(self: streaming._Validator, batch: Any) -> None:
        submit(self, batch)
        assert self._pool is not None  # the run validates in a worker process
        for process in list(self._pool._processes.values()):
            process.kill()

    changed = pd.read_csv(CSV, dtype=str, keep_default_na=False)
    changed["Status"] = "Closed"  # another file: the run checks it
    source = tmp_path / "changed.csv"
    changed.to_csv(source, index=False)
    monkeypatch.setattr(streaming._Validator, "submit", killing_the_worker)
    # a new var dir: no kept copy, so the rows are staged while they are checked
    with pytest.raises(BrokenProcessPool):
        _run(datasette_server, tmp_path, monkeypatch, "v2", source, stream=True, table=table)
    portal = get_portal("datasette", settings)
    live = portal.current_version(table)
    assert live is not None and live.run_id == first.record.run_id
    assert _rows(datasette_server, table) == before
    assert portal.staging(table) == []
    assert not list((tmp_path / "v2" / "spool" / DATASET).glob("*"))
    ledger = Ledger(tmp_path / "v2" / "ledger.db")
    failed = ledger.last(DATASET, "failed")
    assert failed is not None and "BrokenProcessPool" in failed.reason


def test_a_streamed_republish_sends_only_the_rows_changed_in_place(
    datasette_server: DatasetteServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = unique_table("inplace")
    settings, spec, first = _run(
        datasette_server, tmp_path, monkeypatch, "v1", CSV, stream=True, table=table
    )
    assert first.outcome == "published"
    source = pd.read_csv(CSV, dtype=str, keep_default_na=False)
    edited = source.index[100:9_000:300]  # 30 rows, in several batches, changed in place
    source.loc[edited, "Status"] = source.loc[edited, "Status"].map(
        lambda status: "Open" if status == "Closed" else "Closed"
    )
    added = source.iloc[:5].assign(SRNumber=[f"1-99000000{n}" for n in range(5)])
    variant = pd.concat([source.drop(index=[7, 4_321]), added], ignore_index=True)
    path = tmp_path / "variant.csv"
    variant.to_csv(path, index=False)

    with monkeypatch.context() as mp:
        again = _settings(datasette_server, tmp_path / "v1", mp, stream=True)
        outcome = run_dataset(again, DATASET, path, spec=spec)
    assert outcome.outcome == "published", outcome.reason
    assert outcome.result is not None
    assert (outcome.result.upserted, outcome.result.deleted) == (35, 2)
    assert "changed rows only: 35 upserted, 2 deleted" in outcome.record.reason

    _, full_spec, full = _run(datasette_server, tmp_path, monkeypatch, "full", path, stream=False)
    assert full.outcome == "published"
    assert _rows(datasette_server, table) == _rows(datasette_server, full_spec.table)
    portal = get_portal("datasette", settings)
    live, full_live = portal.current_version(table), portal.current_version(full_spec.table)
    assert live is not None and full_live is not None
    assert live.data_version == full_live.data_version
    manifest = published.latest(again, DATASET)
    assert manifest is not None and manifest.version == live.version and manifest.rows == 10_002
