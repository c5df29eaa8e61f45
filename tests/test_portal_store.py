"""The portal database side of a publish (publish_store), on plain SQLite files.

The HTTP behaviour is tested against the real server in test_portal_*.py; these
cover what needs a crafted database: one made by an earlier release, a lease that
ran out, and the exact refusal texts.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from civicflow.portals import publish_store as store

COLUMNS = [("id", "integer"), ("label", "text")]


@pytest.fixture
def conn(tmp_path: Path):
    db = sqlite3.connect(tmp_path / "portal.db", isolation_level=None)
    yield db
    db.close()


def _publish(conn: sqlite3.Connection, table: str, run_id: str, rows: list, base=None) -> dict:
    staging = store.prepare(conn, table, run_id, COLUMNS, ["id"], base, 300)["staging"]
    store.load(conn, table, staging, run_id, ["id", "label"], rows)
    return store.swap(
        conn, table, staging, run_id, len(rows), (f"v-{run_id}", f"d-{run_id}"), base, {}
    )


def test_a_database_from_an_earlier_release_is_migrated(conn) -> None:
    conn.execute(
        "create table _civicflow_versions (id integer primary key, table_name text not null,"
        " version text not null, rows integer not null, run_id text, published_at text not null)"
    )
    conn.execute(
        "create table _civicflow_staging (name text primary key, table_name text not null,"
        " run_id text, created_at text not null)"
    )
    conn.execute("create table t (id integer primary key, label text)")
    conn.execute("insert into _civicflow_versions values (1, 't', 'old', 0, 'run-0', '2026')")
    conn.execute("create table _civicflow_stage_t_dead (id integer)")
    conn.execute("insert into _civicflow_staging values ('_civicflow_stage_t_dead', 't', 'x', '')")

    done = _publish(conn, "t", "run-1", [[1, "a"]], base=1)

    assert done["serial"] == 2 and store.live_version(conn, "t")["data_version"] == "d-run-1"
    assert not store.exists(conn, "_civicflow_stage_t_dead")  # no lease: reclaimed


def test_only_expired_leases_are_reclaimed(conn) -> None:
    live_run = store.prepare(conn, "t", "run-live", COLUMNS, [], None, 300)["staging"]
    dead_run = store.prepare(conn, "t", "run-dead", COLUMNS, [], None, 300)["staging"]
    conn.execute(
        "update _civicflow_staging set lease_expires_at = '2000-01-01T00:00:00+00:00'"
        " where name = ?",
        [dead_run],
    )
    third = store.prepare(conn, "t", "run-3", COLUMNS, [], None, 300)
    assert [r["run_id"] for r in third["reclaimed"]] == ["run-dead"]
    assert [c["run_id"] for c in third["concurrent"]] == ["run-live"]
    assert store.exists(conn, live_run) and not store.exists(conn, dead_run)


def test_a_swap_from_a_stale_base_names_the_run_that_published(conn) -> None:
    first = _publish(conn, "t", "run-1", [[1, "a"]])
    staging = store.prepare(conn, "t", "run-late", COLUMNS, [], first["serial"], 300)["staging"]
    _publish(conn, "t", "run-2", [[2, "b"]], base=first["serial"])
    with pytest.raises(store.Conflict, match="changed since run run-late began: run run-2") as e:
        store.swap(conn, "t", staging, "run-late", 0, ("v", "d"), first["serial"], {})
    assert e.value.live["run_id"] == "run-2" and e.value.status == 409


def test_load_renews_the_lease(conn) -> None:
    staging = store.prepare(conn, "t", "run-1", COLUMNS, [], None, 300)["staging"]
    conn.execute("update _civicflow_staging set lease_expires_at = '' where name = ?", [staging])
    store.load(conn, "t", staging, "run-1", ["id"], [[1]])
    (expires,) = conn.execute(
        "select lease_expires_at from _civicflow_staging where name = ?", [staging]
    ).fetchone()
    assert expires > store.staging_status(conn, "t")[0]["created_at"]
    assert store.staging_status(conn, "t")[0]["expired"] is False
