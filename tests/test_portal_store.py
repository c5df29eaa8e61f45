"""The portal database side of a publish (publish_store), on plain SQLite files.

The HTTP behaviour is tested against the real server in test_portal_*.py; these
cover what needs a crafted database: one made by an earlier release, a lease that
ran out, and the exact refusal texts.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pyarrow as pa
import pytest

from civicflow.portals import publish_store as store

COLUMNS = [("id", "integer"), ("label", "text")]


def _batch(names: list[str], rows: list[list]) -> pa.Table:
    """Rows as the plugin hands them to load: an Arrow table, one column per name."""
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in names]
    return pa.table({name: list(values) for name, values in zip(names, columns, strict=True)})


@pytest.fixture
def conn(tmp_path: Path):
    db = sqlite3.connect(tmp_path / "portal.db", isolation_level=None)
    yield db
    db.close()


def _publish(conn: sqlite3.Connection, table: str, run_id: str, rows: list, base=None) -> dict:
    staging = store.prepare(conn, table, run_id, COLUMNS, ["id"], base, 300)["staging"]
    store.load(conn, table, staging, run_id, _batch(["id", "label"], rows))
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
    store.load(conn, "t", staging, "run-1", _batch(["id"], [[1]]))
    (expires,) = conn.execute(
        "select lease_expires_at from _civicflow_staging where name = ?", [staging]
    ).fetchone()
    assert expires > store.staging_status(conn, "t")[0]["created_at"]
    assert store.staging_status(conn, "t")[0]["expired"] is False


def _stage(conn, table: str, run_id: str, columns, rows: list, base: int) -> str:
    staging = store.prepare(conn, table, run_id, columns, ["id"], base, 300)["staging"]
    if rows:
        store.load(conn, table, staging, run_id, _batch([name for name, _ in columns], rows))
    return staging


@pytest.mark.parametrize("live_key", [["id"], []], ids=["keyed-live-table", "no-unique-key"])
def test_apply_changes_deletes_and_upserts_by_key_in_the_live_table(conn, live_key) -> None:
    """The live table may lack a unique key (published without one): rows are matched
    by the key columns either way."""
    staging = store.prepare(conn, "t", "run-1", COLUMNS, live_key, None, 300)["staging"]
    store.load(conn, "t", staging, "run-1", _batch(["id", "label"], [[1, "a"], [2, "b"], [3, "c"]]))
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


def test_load_stores_typed_columns_and_refuses_a_bad_batch_whole(conn) -> None:
    staging = store.prepare(conn, "t", "run-1", [*COLUMNS, ("amount", "float")], ["id"], None, 300)
    name = staging["staging"]
    good = pa.table(
        {
            "label": pa.array(["a", None, "c"], pa.large_string()),
            "id": pa.array([1, 2, 3], pa.int32()),
            "amount": pa.array([1.5, None, 2], pa.float64()),
        }
    )
    assert store.load(conn, "t", name, "run-1", good)["rows"] == 3
    stored = conn.execute(f"select id, typeof(id), label, amount from {name} order by id")
    assert stored.fetchall() == [
        (1, "integer", "a", 1.5),
        (2, "integer", None, None),
        (3, "integer", "c", 2.0),
    ]
    refused = {
        "text in an integer column": (pa.table({"id": ["4"]}), "id (string cannot go in a INTEGER"),
        "a float in an integer column": (
            pa.table({"id": [4.5]}),
            "id (double cannot go in a INTEGER",
        ),
        "a timestamp in a text column": (
            pa.table({"id": [4], "label": pa.array([0], pa.timestamp("s"))}),
            "label (timestamp[s] cannot go in a TEXT",
        ),
        "an unknown column": (pa.table({"id": [4], "nope": ["x"]}), "no column(s) 'nope'"),
        "a duplicate key at row 2": (
            pa.table({"id": [4, 5, 1], "label": ["d", "e", "again"]}),
            "(row 2 of this batch of 3; batch not stored)",
        ),
        "an integer too large for SQLite": (
            pa.table({"id": pa.array([6, 2**64 - 1], pa.uint64())}),
            "row 1 of this batch of 2",
        ),
    }
    for what, (batch, message) in refused.items():
        conn.execute("begin")  # as the plugin runs each step: one transaction
        with pytest.raises(store.Refused) as refusal:
            store.load(conn, "t", name, "run-1", batch)
        conn.execute("rollback")
        assert refusal.value.status == 400 and message in str(refusal.value), (what, refusal.value)
    assert conn.execute(f"select count(*) from {name}").fetchone() == (3,)


def _indexes(conn: sqlite3.Connection, table: str) -> dict[str, list[str]]:
    names = [
        r[0]
        for r in conn.execute(
            "select name from sqlite_master where type = 'index'"
            " and tbl_name = ? and sql is not null",
            [table],
        )
    ]
    return {n: [r[2] for r in conn.execute(f"pragma index_info({n})")] for n in names}


def test_a_swap_builds_the_indexes_asked_for_on_the_new_live_table(conn) -> None:
    columns = [*COLUMNS, ("cd", "integer")]
    rows = [[i, f"type {i % 3}", i % 15] for i in range(300)]

    def publish(run_id: str, indexes: list[list[str]], base=None) -> dict:
        staging = store.prepare(conn, "t", run_id, columns, ["id"], base, 300)["staging"]
        store.load(conn, "t", staging, run_id, _batch(["id", "label", "cd"], rows))
        return store.swap(conn, "t", staging, run_id, 300, (run_id, run_id), base, {}, indexes)

    first = publish("run-1", [["label", "cd"], ["cd"]])
    assert _indexes(conn, "t") == {"idx_t_cd": ["cd"], "idx_t_label_cd": ["label", "cd"]}
    assert store.table_indexes(conn, "t") == [["cd"], ["label", "cd"]]
    plan = conn.execute(
        "explain query plan select id, label from t where label = 'type 1' and cd = 4"
    )
    assert "INDEX idx_t_label_cd (label=? AND cd=?)" in plan.fetchall()[-1][-1]
    # The next version brings its own indexes; the old table's went with it.
    second = publish("run-2", [["label"]], base=first["serial"])
    assert _indexes(conn, "t") == {"idx_t_label": ["label"]}
    # A change set keeps them in step; reindex fixes them without a new version.
    staged = _stage(conn, "t", "run-3", columns, [[1, "x", 1]], second["serial"])
    store.apply_changes(
        conn, "t", "run-3", (staged, None), ["id"], ("v3", "d3"), second["serial"], {}, [["cd"]]
    )
    assert _indexes(conn, "t") == {"idx_t_cd": ["cd"]}
    done = store.reindex(conn, "t", [["cd"], ["label", "cd"]])
    assert (done["created"], done["dropped"]) == ([["label", "cd"]], [])
    assert store.reindex(conn, "t", [])["dropped"] == [["cd"], ["label", "cd"]]
    assert _indexes(conn, "t") == {} and store.live_version(conn, "t")["run_id"] == "run-3"


def test_an_index_on_a_column_the_table_lacks_is_refused_and_nothing_changes(conn) -> None:
    first = _publish(conn, "t", "run-1", [[1, "a"]])
    staging = store.prepare(conn, "t", "run-2", COLUMNS, ["id"], first["serial"], 300)["staging"]
    store.load(conn, "t", staging, "run-2", _batch(["id", "label"], [[2, "b"]]))
    for bad in ([["nope"]], [[]], [["id", "id"]]):
        conn.execute("begin")
        with pytest.raises(store.Refused, match="must name distinct columns of t"):
            store.swap(conn, "t", staging, "run-2", 1, ("v", "d"), first["serial"], {}, bad)
        conn.execute("rollback")
    assert conn.execute("select id, label from t").fetchall() == [(1, "a")]
    assert store.live_version(conn, "t")["run_id"] == "run-1"


def test_the_replaced_rows_stay_private_until_dropped_after_the_swap(conn) -> None:
    first = _publish(conn, "t", "run-1", [[1, "a"]])
    assert first["old_table"] is None
    _publish(conn, "t_x", "run-1", [[1, "other table"]])
    second = _publish(conn, "t", "run-2", [[2, "b"]], base=first["serial"])
    old = second["old_table"]
    assert store.is_private(old) and conn.execute(f"select * from {old}").fetchall() == [(1, "a")]
    assert conn.execute("select * from t").fetchall() == [(2, "b")]
    # A portal stopped before the drop: the next prepare of the table drops it.
    store.prepare(conn, "t", "run-3", COLUMNS, ["id"], second["serial"], 300)
    assert not store.exists(conn, old)
    third = _publish(conn, "t_x", "run-2", [[3, "c"]], base=2)
    assert store.drop_old(conn, "t") == []  # another table's old rows are its own
    assert store.drop_old(conn, "t_x") == [third["old_table"]]
