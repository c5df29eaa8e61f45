"""The vectorised diff (civicflow.changes) against a brute-force reference: random inserts,
updates and deletes on small tables of every column type, by key (single and composite)
and without one, with the old side as a DataFrame, an Arrow table or a Parquet file."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from civicflow.changes import DiffError, diff

WORDS = ["alpha", "beta", "gamma", "", None, "ñandú", "x" * 40]


def random_frame(rng: np.random.Generator, n: int, start: int = 0) -> pd.DataFrame:
    """Rows of every type the pipeline publishes, with nulls and empty strings."""
    when = pd.to_datetime("2024-01-01") + pd.to_timedelta(rng.integers(0, 10**7, n), unit="s")
    frame = pd.DataFrame(
        {
            "id": np.arange(start, start + n, dtype=np.int64),
            "region": rng.choice(["north", "south"], n),
            "code": pd.Series(rng.choice(np.array(WORDS, dtype=object), n), dtype="str"),
            "amount": np.where(rng.random(n) < 0.1, np.nan, rng.normal(100, 30, n).round(2)),
            "when": pd.Series(when.astype("datetime64[s]")).mask(rng.random(n) < 0.1),
            "flag": pd.array(rng.choice([True, False, None], n), dtype="boolean"),
            "count": pd.array(np.where(rng.random(n) < 0.1, None, rng.integers(0, 9, n)), "Int64"),
        }
    )
    return frame


def mutate(rng: np.random.Generator, old: pd.DataFrame, next_id: int) -> tuple[pd.DataFrame, int]:
    """Delete, update and insert random rows, then shuffle (a diff ignores order)."""
    new = old.drop(index=old.index[rng.random(len(old)) < 0.15]).copy()
    for column in ("code", "amount", "when", "flag", "count"):
        touched = new.index[rng.random(len(new)) < 0.08]
        donors = random_frame(rng, len(touched))
        new.loc[touched, column] = donors[column].to_numpy()  # may equal the old value
    inserted = random_frame(rng, int(rng.integers(0, 12)), start=next_id)
    new = pd.concat([new, inserted], ignore_index=True)
    new = new.iloc[rng.permutation(len(new))].reset_index(drop=True)
    return new, next_id + len(inserted)


def _value(v: Any) -> Any:
    return None if v is None or v is pd.NA or (not isinstance(v, str) and pd.isna(v)) else v


def _rows(frame: pd.DataFrame, columns: list[str]) -> list[tuple[Any, ...]]:
    full = frame.reindex(columns=columns)
    return [tuple(_value(v) for v in row) for row in full.itertuples(index=False, name=None)]


def reference(old: pd.DataFrame, new: pd.DataFrame, key: list[str]) -> dict[str, Any]:
    """Row by row, in Python: what changed, by key (positions) or as a multiset."""
    columns = list(new.columns) + [c for c in old.columns if c not in new.columns]
    old_rows, new_rows = _rows(old, columns), _rows(new, columns)
    if not key:
        return {
            "added": Counter(new_rows) - Counter(old_rows),
            "deleted": Counter(old_rows) - Counter(new_rows),
        }
    at = [columns.index(k) for k in key]
    old_by = {tuple(r[i] for i in at): (p, r) for p, r in enumerate(old_rows)}
    new_by = {tuple(r[i] for i in at): (p, r) for p, r in enumerate(new_rows)}
    return {
        "added": sorted(p for k, (p, _) in new_by.items() if k not in old_by),
        "changed": sorted(p for k, (p, r) in new_by.items() if k in old_by and old_by[k][1] != r),
        "deleted": sorted(p for k, (p, _) in old_by.items() if k not in new_by),
        "deleted_keys": sorted(k for k in old_by if k not in new_by),
    }


def as_side(frame: pd.DataFrame, kind: str, tmp_path: Path) -> Any:
    if kind == "frame":
        return frame
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if kind == "arrow":
        return table
    path = tmp_path / "old.parquet"  # datetime64[s] comes back as milliseconds
    pq.write_table(table, path, compression="zstd")
    return path


@pytest.mark.parametrize("kind", ["frame", "arrow", "parquet"])
@pytest.mark.parametrize("key", [["id"], ["region", "id"]])
def test_keyed_diff_matches_the_brute_force_reference(kind, key, tmp_path) -> None:
    rng = np.random.default_rng(len(kind) * 7 + len(key))
    old, next_id = random_frame(rng, 120), 120
    checked = 0
    for _ in range(6):  # a chain of versions, each diffed against the one before
        new, next_id = mutate(rng, old, next_id)
        found = diff(as_side(old, kind, tmp_path), new, key)
        want = reference(old, new, key)
        assert (found.rows_before, found.rows_after) == (len(old), len(new))
        assert list(found.positions("added")) == want["added"]
        assert list(found.positions("changed")) == want["changed"]
        assert list(found.positions("deleted")) == want["deleted"]
        assert (found.added, found.changed, found.deleted) == (
            len(want["added"]),
            len(want["changed"]),
            len(want["deleted"]),
        )
        counted = diff(as_side(old, kind, tmp_path), new, key, listed=False)
        assert counted.counts() == found.counts() and counted.rows is None
        deletes = found.deletes()
        assert list(deletes.columns) == key
        assert sorted(_rows(deletes, key)) == want["deleted_keys"]
        upserts = found.upserts(new)
        assert sorted(upserts.index) == sorted(want["added"] + want["changed"])
        checked += found.added + found.changed + found.deleted
        old = new
    assert checked > 30  # the mutations did change rows of every kind


@pytest.mark.parametrize("kind", ["frame", "parquet"])
def test_keyless_diff_is_a_multiset_difference(kind, tmp_path) -> None:
    rng = np.random.default_rng(5)
    old = random_frame(rng, 80).drop(columns=["id"])
    old = pd.concat([old, old.iloc[:10]], ignore_index=True)  # repeated rows
    for _ in range(5):
        new, _ = mutate(rng, old.assign(id=0), 0)
        new = new.drop(columns=["id"])
        new = pd.concat([new, new.iloc[:3]], ignore_index=True)  # more copies of a row
        found = diff(as_side(old, kind, tmp_path), new)
        want = reference(old, new, [])
        columns = list(new.columns)
        assert found.changed is None and not found.keyed
        assert Counter(_rows(new.iloc[found.positions("added")], columns)) == want["added"]
        assert Counter(_rows(old.iloc[found.positions("deleted")], columns)) == want["deleted"]
        assert found.added == sum(want["added"].values())
        assert found.deleted == sum(want["deleted"].values())
        assert found.rows_after - found.added == found.rows_before - found.deleted
        assert diff(as_side(old, kind, tmp_path), new, listed=False).counts() == found.counts()
        old = new


def test_same_rows_in_another_order_and_form_are_unchanged(tmp_path) -> None:
    rng = np.random.default_rng(1)
    frame = random_frame(rng, 200)
    path = as_side(frame, "parquet", tmp_path)
    shuffled = frame.iloc[rng.permutation(len(frame))].reset_index(drop=True)
    for key in (["id"], []):
        found = diff(path, shuffled, key)
        assert found.unchanged and found.rows.num_rows == 0, found.counts()
    # the same values in another type: float amounts as text stay changed, ints as floats do not
    retyped = frame.assign(count=frame["count"].astype("Float64"))
    assert diff(frame, retyped, ["id"]).unchanged


def test_first_version_adds_every_row_and_column_changes_count() -> None:
    rng = np.random.default_rng(2)
    frame = random_frame(rng, 50)
    first = diff(None, frame, ["id"])
    assert first.counts() == {
        "rows_before": 0,
        "rows": 50,
        "added": 50,
        "changed": 0,
        "deleted": 0,
    }
    assert list(first.positions("added")) == list(range(50))
    # a new column with a value changes exactly the rows that have one
    extra = frame.assign(note=[None] * 45 + ["x"] * 5)
    assert diff(frame, extra, ["id"]).changed == 5
    # a removed column changes the rows where it had a value
    assert diff(frame, frame.drop(columns=["amount"]), ["id"]).changed == int(
        frame["amount"].notna().sum()
    )


def test_repeated_or_missing_keys_are_refused() -> None:
    rng = np.random.default_rng(3)
    frame = random_frame(rng, 30)
    twice = pd.concat([frame, frame.iloc[:2]], ignore_index=True)
    with pytest.raises(DiffError, match="repeats"):
        diff(frame, twice, ["id"])
    with pytest.raises(DiffError, match="repeats"):
        diff(twice, frame, ["id"])
    with pytest.raises(DiffError, match="repeats"):
        diff(twice, twice, ["id"])  # as many pairs as rows on neither side
    with pytest.raises(DiffError, match="not in the new rows"):
        diff(frame, frame.drop(columns=["id"]), ["id"])
    with pytest.raises(DiffError, match="repeats"):
        diff(frame, twice, ["id"], listed=False)
    with pytest.raises(ValueError, match="only counts"):
        diff(frame, frame, ["id"], listed=False).upserts(frame)


def test_a_larger_table_counts_exactly() -> None:
    """200,000 rows: the counts of a known edit (the size is the benchmark's business)."""
    rng = np.random.default_rng(4)
    n = 200_000
    old = pd.DataFrame(
        {
            "id": np.arange(n),
            "status": pd.Series(rng.choice(["Open", "Closed", "Pending"], n), dtype="str"),
            "value": rng.normal(size=n),
        }
    )
    deleted = rng.choice(n, 1_000, replace=False)
    new = old.drop(index=deleted)
    updated = rng.choice(new.index.to_numpy(), 2_000, replace=False)
    new.loc[updated, "value"] += 1.0
    new = pd.concat(
        [new, pd.DataFrame({"id": np.arange(n, n + 500), "status": "Open", "value": 0.0})],
        ignore_index=True,
    )
    found = diff(old, new, ["id"])
    assert (found.added, found.changed, found.deleted) == (500, 2_000, 1_000)
    assert sorted(found.deletes()["id"]) == sorted(deleted)
    assert found.in_place and len(found.upserts(new)) == 2_500  # edited in place, appended


# -- whether new is old changed in place, and the change sets that rebuild new ----------


def apply_by_key(
    old: pd.DataFrame, upserts: pd.DataFrame, deletes: pd.DataFrame, key: list[str]
) -> pd.DataFrame:
    """What a portal's apply_changes leaves, row by row: the deleted keys go, an upserted
    row with a live key takes that row's place, the others are appended in order."""
    keys = [tuple(r) for r in old[key].itertuples(index=False, name=None)]
    gone = set(deletes[key].itertuples(index=False, name=None))
    table = {k: row for k, row in zip(keys, old.to_dict("records"), strict=True) if k not in gone}
    for row in upserts.to_dict("records"):
        table[tuple(row[k] for k in key)] = row  # a live key keeps its place in the dict
    return pd.DataFrame(list(table.values()), columns=old.columns)


@pytest.mark.parametrize(
    ("keys", "values", "in_place", "upserted"),
    [
        ([1, 2, 3, 4, 5], "abcde", True, []),  # the same rows
        ([1, 2, 3, 4, 5], "abXdY", True, [3, 5]),  # changed in place
        ([1, 2, 4, 5], "abdZ", True, [5]),  # deletes and a change
        ([1, 2, 3, 4, 5, 8, 9], "abcdeyz", True, [8, 9]),  # appended
        ([1, 3, 5, 9], "aXez", True, [3, 9]),  # all three kinds, new rows last
        ([2, 1, 3, 4, 5], "bacde", False, []),  # reordered
        ([1, 3, 2, 4, 5], "acXde", False, [2]),  # a changed row moved
        ([1, 2, 9, 3, 4, 5], "abzcde", False, [9]),  # inserted in the middle
        ([9, 1, 2, 3, 4, 5], "zabcde", False, [9]),  # inserted first
        ([], "", True, []),  # every row deleted
        ([8, 9], "yz", True, [8, 9]),  # every row replaced by new keys
    ],
)
def test_in_place_says_whether_kept_rows_keep_their_order_and_new_rows_come_last(
    keys: list[int], values: str, in_place: bool, upserted: list[int]
) -> None:
    old = pd.DataFrame({"k": [1, 2, 3, 4, 5], "v": list("abcde")})
    new = pd.DataFrame({"k": pd.array(keys, dtype="int64"), "v": list(values)})
    found = diff(old, new, ["k"])
    assert found.in_place is in_place
    assert found.upserts(new)["k"].tolist() == upserted
    rebuilt = apply_by_key(old, found.upserts(new), found.deletes(), ["k"])
    assert (rebuilt.to_dict("records") == new.to_dict("records")) is in_place


def test_in_place_is_only_known_by_a_listed_keyed_diff() -> None:
    old = pd.DataFrame({"k": [1, 2], "v": ["a", "b"]})
    assert diff(old, old, ["k"], listed=False).in_place is None
    assert diff(old, old).in_place is None
    assert diff(None, old, ["k"]).in_place is True  # a first version: every row appended


@pytest.mark.parametrize("key", [["id"], ["region", "id"]])
@pytest.mark.parametrize("shuffle", [False, True])
def test_the_change_sets_rebuild_new_in_its_order(key: list[str], shuffle: bool) -> None:
    """Random edits in place, deletes and appended rows (``shuffle``: then two old rows
    swapped): in place, added and changed rows and deleted keys rebuild ``new``; else the
    rows from ``in_order`` on, the moved live keys deleted first, do."""
    rng = np.random.default_rng(11 + shuffle + len(key))
    old = random_frame(rng, 150)
    for round_ in range(4):
        new = old.drop(index=old.index[rng.random(len(old)) < 0.1]).copy()
        touched = new.index[rng.random(len(new)) < 0.1]
        new.loc[touched, "code"] = random_frame(rng, len(touched))["code"].to_numpy()
        added = random_frame(rng, int(rng.integers(0, 8)), start=1_000 * (round_ + 1))
        new = pd.concat([new, added], ignore_index=True)
        if shuffle:
            a, b = rng.choice(len(new) - len(added), 2, replace=False)  # two old rows
            order = np.arange(len(new))
            order[[a, b]] = order[[b, a]]
            new = new.iloc[order].reset_index(drop=True)
        found = diff(old, new, key)
        assert found.in_place is not shuffle
        if found.in_place:
            rebuilt = apply_by_key(old, found.upserts(new), found.deletes(), key)
        else:
            deletes = pd.concat([found.deletes(), found.moved_keys(new)], ignore_index=True)
            rebuilt = apply_by_key(old, found.appended(new), deletes, key)
        assert _rows(rebuilt, list(new.columns)) == _rows(new, list(new.columns))
        old = new
