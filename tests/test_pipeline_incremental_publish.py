"""Incremental publish (issue 13, item 4): a republish sends only the changed rows.

The bundled 311 data is published to the real Datasette portal, then rows are deleted,
updated and inserted at random and the file is published again: only the added, changed
and deleted rows travel (``apply_changes``), and the portal, the version, the Parquet
copy and the history come out as a full publish of the same file gives them. Too many
changes, or no kept copy of the live rows, take the full path; a conflict leaves the
live table as it was.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from civicflow import pipeline, published
from civicflow.ledger import Ledger
from civicflow.pipeline import RunOutcome, run_dataset
from civicflow.portals import PortalConflict, TableMetadata, get_portal, published_version
from civicflow.settings import Settings
from civicflow.spec import DatasetSpec, find_dataset
from civicflow.spec.models import PortalTarget
from tests.fixtures.portal import PROJECT_DIR, DatasetteServer, point_civicflow_at, unique_table

DATASET = "la311_service_requests"
CSV = PROJECT_DIR / "data" / DATASET / "MyLA311_Service_Request_Data_2017_Subset.csv"


def _source() -> pd.DataFrame:
    return pd.read_csv(CSV, dtype=str, keep_default_na=False)


def _mutate(
    frame: pd.DataFrame,
    *,
    deletes: int,
    updates: int,
    inserts: int,
    seed: int,
    last: bool = True,
    within: int | None = None,
) -> tuple[pd.DataFrame, set[str]]:
    """Delete random rows, update others (status and request source, from values the
    data has) and insert copies under fresh numbers; also the keys that changed.

    ``last``: the updated and inserted rows come last, as a source listing rows by update
    time gives them; else updates stay in place and inserts land anywhere. ``within``:
    update only among the last that many rows."""
    rng = np.random.default_rng(seed)
    pool = np.arange(len(frame)) if within is None else np.arange(len(frame) - within, len(frame))
    edited = rng.choice(pool, updates, replace=False)
    rest = np.setdiff1d(np.arange(len(frame)), edited)
    gone = rng.choice(rest, deletes, replace=False)
    out = frame.copy()
    for i in edited:
        for column in ("Status", "RequestSource"):
            others = [v for v in frame[column].unique() if v != out.at[i, column]]
            out.at[i, column] = others[int(rng.integers(len(others)))]
    changed = set(out.loc[edited, "SRNumber"]) | set(frame.loc[gone, "SRNumber"])
    new = frame.iloc[rng.choice(len(frame), inserts, replace=False)].copy()
    new["SRNumber"] = [f"1-9{seed:03d}{n:06d}" for n in range(inserts)]
    changed |= set(new["SRNumber"])
    if last:
        moved = out.loc[np.sort(edited)]
        out = pd.concat([out.drop(index=[*gone, *edited]), moved, new], ignore_index=True)
        return out, changed
    out = out.drop(index=gone).reset_index(drop=True)
    for _, row in new.iterrows():
        at = int(rng.integers(len(out) + 1))
        out = pd.concat([out.iloc[:at], row.to_frame().T, out.iloc[at:]], ignore_index=True)
    return out.reset_index(drop=True), changed


def _write(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False)
    return path


def _spec(settings: Settings, table: str) -> DatasetSpec:
    spec = find_dataset(settings.datasets_dir, DATASET)
    return spec.model_copy(update={"portal": PortalTarget(kind="datasette", table=table)})


def _rows(server: DatasetteServer, table: str) -> list[dict[str, object]]:
    """Every live row as a resident reads it, in the table's order (the query API and the
    downloads read it in storage order; Datasette's pages sort by key)."""
    rows: list[dict[str, object]] = []
    while page := server.query(
        f'select * from "{table}" order by rowid limit 1000 offset {len(rows)}'
    ):
        rows += page
    assert len(rows) == server.row_count(table)
    return rows


def _live(settings: Settings, spec: DatasetSpec):  # type: ignore[no-untyped-def]
    return get_portal("datasette", settings).current_version(spec.table)


@pytest.fixture
def first(
    datasette_server: DatasetteServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Settings, DatasetSpec]:
    """The bundled 311 data published in full to a fresh table, from a fresh var dir."""
    settings = point_civicflow_at(datasette_server, tmp_path / "var", monkeypatch)
    spec = _spec(settings, unique_table("inc"))
    outcome = run_dataset(settings, DATASET, CSV, spec=spec)
    assert outcome.outcome == "published" and outcome.result is not None
    assert outcome.result.upserted is None  # a new table: published in full
    return settings, spec


def _full_publish(
    server: DatasetteServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: Path
) -> tuple[Settings, DatasetSpec, RunOutcome]:
    """``source`` published in full to another fresh table from another var dir."""
    with monkeypatch.context() as mp:
        settings = point_civicflow_at(server, tmp_path / "full-var", mp)
        spec = _spec(settings, unique_table("full"))
        outcome = run_dataset(settings, DATASET, source, spec=spec)
    assert outcome.outcome == "published" and outcome.result is not None
    assert outcome.result.upserted is None
    return settings, spec, outcome


def test_a_republish_sends_only_the_changed_rows_and_equals_a_full_publish(
    first, datasette_server, tmp_path, monkeypatch, caplog
) -> None:
    settings, spec = first
    variant, changed_keys = _mutate(_source(), deletes=30, updates=40, inserts=20, seed=7)
    source = _write(tmp_path / "variant.csv", variant)

    with caplog.at_level("INFO", logger="civicflow.pipeline"):
        outcome = run_dataset(settings, DATASET, source, spec=spec)

    assert outcome.outcome == "published", outcome.reason
    result = outcome.result
    assert result is not None and (result.upserted, result.deleted) == (60, 30)
    assert result.rows == len(variant) == 9999 - 30 + 20
    assert "changed rows only: 60 upserted, 30 deleted" in outcome.record.reason
    path_log = [r.getMessage() for r in caplog.records if "changes-only publish" in r.getMessage()]
    assert path_log == [
        f"{DATASET}: changes-only publish: 20 added, 40 changed, 30 deleted of 9,999 live rows"
        " (0 unchanged rows sent again to keep the row order)"
    ]
    assert not any(k in m for m in path_log for k in changed_keys)  # counts, never values

    full_settings, full_spec, full = _full_publish(datasette_server, tmp_path, monkeypatch, source)
    # the portal holds exactly what a full publish of the same file gives
    assert _rows(datasette_server, spec.table) == _rows(datasette_server, full_spec.table)
    live, full_live = _live(settings, spec), _live(full_settings, full_spec)
    assert live is not None and full_live is not None
    assert live.data_version == full_live.data_version  # the content hash of the new frame
    assert live.rows == full_live.rows
    # the version id is the one a full publish makes: the new frame's hash and the metadata
    manifest, full_manifest = (
        published.latest(settings, DATASET),
        published.latest(full_settings, DATASET),
    )
    assert manifest is not None and full_manifest is not None and manifest.metadata
    assert (manifest.version, manifest.data_version) == (live.version, live.data_version)
    assert live.version == published_version(live.data_version, TableMetadata(**manifest.metadata))
    assert manifest.run_id == outcome.record.run_id and result.version == live.version
    # the same Parquet copy
    pd.testing.assert_frame_equal(
        pd.read_parquet(manifest.path), pd.read_parquet(full_manifest.path)
    )
    # the ledger: the run's version and the history counts of one shared diff
    assert outcome.record.portal_version == live.version
    (summary, *_) = Ledger(settings.ledger_path).versions(DATASET, "datasette")
    assert (summary.run_id, summary.portal_version) == (outcome.record.run_id, live.version)
    assert (summary.added, summary.changed, summary.deleted, summary.rows) == (20, 40, 30, 9989)
    history = manifest.metadata["extra"]["history"]
    assert [h["added"] for h in history] == [20, 9999]

    # and again on top of the incremental version: the kept copy it wrote is the base
    again, _ = _mutate(variant, deletes=5, updates=5, inserts=5, seed=8)
    second = run_dataset(settings, DATASET, _write(tmp_path / "again.csv", again), spec=spec)
    assert second.result is not None and (second.result.upserted, second.result.deleted) == (10, 5)
    _, check_spec, _ = _full_publish(
        datasette_server, tmp_path / "2", monkeypatch, tmp_path / "again.csv"
    )
    assert _rows(datasette_server, spec.table) == _rows(datasette_server, check_spec.table)
    assert run_dataset(settings, DATASET, tmp_path / "again.csv", spec=spec).outcome == "unchanged"


def test_a_change_above_the_threshold_replaces_the_table(
    first, datasette_server, tmp_path, monkeypatch
) -> None:
    settings, spec = first
    share = pipeline.INCREMENTAL_MAX_SHARE
    updates = int(9999 * share) + 50
    variant, _ = _mutate(_source(), deletes=0, updates=updates, inserts=0, seed=3)
    source = _write(tmp_path / "big.csv", variant)

    outcome = run_dataset(settings, DATASET, source, spec=spec)

    assert outcome.outcome == "published" and outcome.result is not None
    assert outcome.result.upserted is None and outcome.result.deleted is None  # full path
    (summary, *_) = Ledger(settings.ledger_path).versions(DATASET, "datasette")
    assert (summary.added, summary.changed, summary.deleted) == (0, updates, 0)
    _, full_spec, _ = _full_publish(datasette_server, tmp_path, monkeypatch, source)
    assert _rows(datasette_server, spec.table) == _rows(datasette_server, full_spec.table)


def test_rows_changed_in_place_are_sent_alone(
    first, datasette_server, tmp_path, monkeypatch
) -> None:
    """The portal updates a live key's row where it stands, so rows changed in place go
    alone (not the unchanged rows after them) and the live table keeps the file's order;
    rows added back mid-table are not in place: sent from there on, here the full path."""
    settings, spec = first
    variant, changed = _mutate(
        _source(), deletes=10, updates=20, inserts=0, seed=4, last=False, within=300
    )
    source = _write(tmp_path / "near-end.csv", variant)

    outcome = run_dataset(settings, DATASET, source, spec=spec)

    assert outcome.outcome == "published" and outcome.result is not None
    assert outcome.result.upserted == 20
    assert outcome.result.deleted == 10
    _, full_spec, _ = _full_publish(datasette_server, tmp_path, monkeypatch, source)
    assert _rows(datasette_server, spec.table) == _rows(datasette_server, full_spec.table)
    kept = published.latest(settings, DATASET)
    assert kept is not None and _live(settings, spec).data_version == kept.data_version

    scattered, _ = _mutate(_source(), deletes=0, updates=100, inserts=0, seed=6, last=False)
    source = _write(tmp_path / "scattered.csv", scattered)
    outcome = run_dataset(settings, DATASET, source, spec=spec)
    # the 10 rows deleted above come back mid-table: not in place, too many to send
    assert outcome.result is not None and outcome.result.upserted is None  # full path
    _, check_spec, _ = _full_publish(datasette_server, tmp_path / "2", monkeypatch, source)
    assert _rows(datasette_server, spec.table) == _rows(datasette_server, check_spec.table)


def test_without_a_kept_copy_of_the_live_rows_the_table_is_replaced(
    first, datasette_server, tmp_path, monkeypatch
) -> None:
    settings, spec = first
    shutil.rmtree(settings.published_dir / DATASET)
    variant, _ = _mutate(_source(), deletes=3, updates=3, inserts=3, seed=5)
    source = _write(tmp_path / "variant.csv", variant)

    outcome = run_dataset(settings, DATASET, source, spec=spec)

    assert outcome.outcome == "published" and outcome.result is not None
    assert outcome.result.upserted is None  # full path
    _, full_spec, _ = _full_publish(datasette_server, tmp_path, monkeypatch, source)
    assert _rows(datasette_server, spec.table) == _rows(datasette_server, full_spec.table)
    manifest = published.latest(settings, DATASET)
    live = _live(settings, spec)
    assert manifest is not None and live is not None and manifest.version == live.version


def test_a_conflict_leaves_the_live_table_as_it_was(
    first, datasette_server, tmp_path, monkeypatch
) -> None:
    """Another run publishes between this run's start and its apply: refused, untouched."""
    settings, spec = first
    other, _ = _mutate(_source(), deletes=2, updates=0, inserts=0, seed=11)
    mine, _ = _mutate(_source(), deletes=0, updates=4, inserts=1, seed=12)
    real_get_portal = pipeline.get_portal
    published_by_other: list[str] = []

    class Racing:
        """The real portal; just before this run's apply, another run publishes."""

        def __init__(self, portal):  # type: ignore[no-untyped-def]
            self._portal = portal

        def __getattr__(self, name):  # type: ignore[no-untyped-def]
            return getattr(self._portal, name)

        def apply_changes(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            with monkeypatch.context() as mp:
                mp.setattr(pipeline, "get_portal", real_get_portal)
                done = run_dataset(
                    settings, DATASET, _write(tmp_path / "other.csv", other), spec=spec
                )
            published_by_other.append(done.record.run_id)
            return self._portal.apply_changes(*args, **kwargs)

    monkeypatch.setattr(pipeline, "get_portal", lambda kind, s: Racing(real_get_portal(kind, s)))
    with pytest.raises(PortalConflict):
        run_dataset(settings, DATASET, _write(tmp_path / "mine.csv", mine), spec=spec)
    monkeypatch.setattr(pipeline, "get_portal", real_get_portal)

    live = _live(settings, spec)
    assert live is not None and live.run_id == published_by_other[0] and live.rows == 9997
    keys = {r["sr_number"] for r in _rows(datasette_server, spec.table)}
    assert keys == set(other["SRNumber"])
    manifest = published.latest(settings, DATASET)
    assert manifest is not None and manifest.version == live.version  # copy untouched too


@pytest.mark.parametrize(
    ("keys", "kept", "appended"),
    [
        ([1, 2, 3, 4, 5], 5, []),  # the same rows
        ([1, 2, 4, 5], 4, []),  # deletes anywhere keep the order
        ([1, 2, 3, 4, 9, 6], 4, [9, 6]),  # 5 deleted, 9 added, 6 after it
        ([2, 1, 3], 1, [1, 3]),  # moved
        ([1, 3, 2, 6], 2, [2, 6]),
        ([], 0, []),
    ],
)
def test_the_rows_appended_leave_the_new_order(
    keys: list[int], kept: int, appended: list[int]
) -> None:
    """Keep the first ``in_order`` new rows, delete the other old ones, append the rest:
    the new rows in their order."""
    from civicflow.changes import diff

    old = pd.DataFrame({"k": [1, 2, 3, 4, 5], "v": list("abcde")})
    values = dict(zip(old["k"], old["v"], strict=True))
    new = pd.DataFrame({"k": keys, "v": [values.get(k, "z") for k in keys]}, dtype=object)
    new["k"] = new["k"].astype("int64")
    found = diff(old, new, ["k"])
    assert found.in_order == kept
    assert found.appended(new)["k"].tolist() == appended
    survivors = old[old["k"].isin(new["k"].iloc[:kept])]
    rebuilt = pd.concat([survivors, found.appended(new)], ignore_index=True)
    assert rebuilt.to_dict("records") == new.to_dict("records")
