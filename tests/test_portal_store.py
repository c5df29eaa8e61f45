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


def _stage(conn, table: str, run_id: str, columns, rows: list, base: int) -> str:
    staging = store.prepare(conn, table, run_id, columns, ["id"], base, 300)["staging"]
    if rows:
        store.load(conn, table, staging, run_id, [name for name, _ in columns], rows)
    return staging


@pytest.mark.parametrize("live_key", [["id"], []], ids=["keyed-live-table", "no-unique-key"])
def test_apply_changes_deletes_and_upserts_by_key_in_the_live_table(conn, live_key) -> None:
    """The live table may lack a unique key (published without one): rows are matched
    by the key columns either way."""
    staging = store.prepare(conn, "t", "run-1", COLUMNS, live_key, None, 300)["staging"]
    store.load(conn, "t", staging, "run-1", ["id", "label"], [[1, "a"], [2, "b"], [3, "c"]])
    first = store.swap(conn, "t", staging, "run-1", 3, ("v1", "d1"), None, {})
    upserts = _stage(conn, "t", "run-2", COLUMNS, [[2, "B"], [4, "d"]], first["serial"])
    deletes = _stage(conn, "t", "run-2", [("id", "integer")], [[3], [9]], first["serial"])
    done = store.apply_changes(
        conn, "t", "run-2", (upserts, deletes), ["id"], ("v2", "d2"), first["serial"], {}
    )
    assert (done["upserted"], done["deleted"], done["rows"]) == (2, 1, 3)  # id 9 was absent
    assert conn.execute("select id, label from t order by id").fetchall() == [
        (1, "a"),
        (2, "B"),
        (4, "d"),
    ]
    assert done["serial"] == first["serial"] + 1 and done["run_id"] == "run-2"
    assert not store.exists(conn, upserts) and not store.exists(conn, deletes)
    assert store.staging_status(conn, "t") == []


def test_apply_changes_refuses_what_it_must_not_apply(conn) -> None:
    with pytest.raises(store.Refused, match="publish it in full first") as missing:
        store.apply_changes(conn, "t", "run-0", (None, None), ["id"], ("v", "d"), None, {})
    assert missing.value.status == 404
    first = _publish(conn, "t", "run-1", [[1, "a"]])
    theirs = _stage(conn, "t", "run-other", COLUMNS, [[1, "x"]], first["serial"])
    with pytest.raises(store.Refused, match="belongs to run run-other") as foreign:
        store.apply_changes(conn, "t", "run-2", (theirs, None), ["id"], ("v", "d"), 1, {})
    assert foreign.value.status == 403
    wider = _stage(conn, "t", "run-3", [*COLUMNS, ("extra", "text")], [], first["serial"])
    with pytest.raises(store.Refused, match="publish in full") as schema:
        store.apply_changes(conn, "t", "run-3", (wider, None), ["id"], ("v", "d"), 1, {})
    assert schema.value.status == 409
    assert conn.execute("select id, label from t").fetchall() == [(1, "a")]
    assert store.live_version(conn, "t")["run_id"] == "run-1"
