"""What changed between two versions of a table: rows added, changed and deleted.

Rows are matched by primary key and compared by a 64-bit hash of the whole row
(DuckDB's ``hash`` over every column: vectorised, on every core, no Python per row).
Without a key the rows are matched as a multiset of row hashes: a row that changed counts
as one deleted and one added, and ``changed`` is None.

Either side may be a DataFrame, an Arrow table or a Parquet file: the kept copy of the
live version (``var/published/<id>/<version>.parquet``) is read by DuckDB straight from
the file, only as keys and hashes. Columns compare by value whatever form they were
stored in (Parquet keeps ``datetime64[s]`` as milliseconds, for one): a column whose type
differs between the sides is cast to one type on both; a column on one side only is null
on the other (so a removed column with values changes those rows).

The result keeps the changes themselves (:attr:`RowDiff.rows`: which change, the row's
position on each side, its key), so an incremental publish can send just those rows
(:meth:`RowDiff.upserts`, :meth:`RowDiff.deletes`). Equal hashes are taken as equal rows
(a 64-bit collision between a row and its own new version is not guarded against).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

Side: TypeAlias = pd.DataFrame | pa.Table | Path | str
Change = Literal["added", "changed", "deleted"]

#: the position column added to each side (0-based row number in that side)
_ROW = "__civicflow_row"
_TIMESTAMPS = {"TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP", "TIMESTAMP_NS"}
_NUMBERS = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE"}
_NUMBERS |= {"U" + t for t in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT")}


def _common_type(was: str, now: str) -> str:
    """The type both sides of a column are cast to when their types differ: timestamps
    to microseconds, numbers to DOUBLE (1 equals 1.0), anything else as text."""
    if {was, now} <= _TIMESTAMPS:
        return "TIMESTAMP"
    if all(t in _NUMBERS or t.startswith("DECIMAL") for t in (was, now)):
        return "DOUBLE"
    return "VARCHAR"


class DiffError(ValueError):
    """The sides cannot be compared by key (a key column missing, or a key repeated).
    Messages name columns, never values."""


@dataclass(frozen=True)
class RowDiff:
    """How ``new`` differs from ``old``.

    ``rows`` has one row per change: ``change`` (added, changed or deleted), ``old_row``
    and ``new_row`` (positions in each side, null where the row is absent) and, with a
    key, the key columns (the old side's values for a deleted row); None when only the
    counts were asked for (``diff(..., listed=False)``).
    """

    key: tuple[str, ...]
    rows_before: int
    rows_after: int
    added: int
    #: None without a key (a changed row is one deleted and one added)
    changed: int | None
    deleted: int
    rows: pa.Table | None
    #: listed keyed diffs only: how many rows at the start of ``new`` are unchanged rows
    #: of ``old`` in the same order (among themselves). A table that keeps those, deletes
    #: the other old rows and appends the rest of ``new`` in order holds ``new`` in its
    #: order (see :meth:`appended`); None when not listed or not keyed
    in_order: int | None = None
    #: listed keyed diffs only: whether ``new`` is ``old`` changed in place: the rows
    #: matched by key (same or changed) keep their relative order and every added row
    #: comes after all of them. A table that deletes the deleted rows, updates the
    #: changed ones where they stand and appends the added ones (:meth:`upserts`) then
    #: holds ``new`` in its order; None when not listed or not keyed
    in_place: bool | None = None

    @property
    def keyed(self) -> bool:
        return bool(self.key)

    @property
    def unchanged(self) -> bool:
        return not (self.added or self.changed or self.deleted)

    def counts(self) -> dict[str, int | None]:
        return {
            "rows_before": self.rows_before,
            "rows": self.rows_after,
            "added": self.added,
            "changed": self.changed,
            "deleted": self.deleted,
        }

    def _listed(self) -> pa.Table:
        if self.rows is None:
            raise ValueError("this diff kept only counts: diff(..., listed=True) lists rows")
        return self.rows

    def positions(self, *changes: Change) -> np.ndarray:
        """Positions of the rows with these changes: in ``new`` for added and changed rows,
        in ``old`` for deleted ones (ask for one side at a time)."""
        rows = self._listed()
        sides = {"deleted" if c == "deleted" else "new" for c in changes}
        if len(sides) != 1:
            raise ValueError("ask for deleted rows apart from added and changed ones")
        column = "old_row" if sides == {"deleted"} else "new_row"
        mask = np.isin(rows.column("change").to_numpy(zero_copy_only=False), list(changes))
        values = rows.column(column).to_numpy(zero_copy_only=False)[mask]
        return np.sort(values.astype(np.int64))

    def upserts(self, new: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``new`` (the frame diffed as ``new``) that are added or changed, in
        ``new``'s order: all a table needs when ``new`` is ``old`` changed in place."""
        return new.iloc[self.positions("added", "changed")]

    def appended(self, new: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``new`` from the first that is not an unchanged old row in the old
        order: every added and changed row, and the unchanged ones after the first of
        those. Upserted (appended) after deleting the old rows not kept, they leave a table
        stored in ``new``'s row order."""
        if self.in_order is None:
            raise ValueError("only a listed, keyed diff knows the rows kept in order")
        return new.iloc[self.in_order :]

    def moved_keys(self, new: pd.DataFrame) -> pd.DataFrame:
        """The key columns of the rows of :meth:`appended` that are old rows (changed, or
        unchanged but out of the old order): deleted first, an upsert of them appends them
        instead of updating them where they stand."""
        if self.in_order is None:
            raise ValueError("only a listed, keyed diff knows the rows kept in order")
        tail = np.arange(self.in_order, len(new))
        return new.iloc[np.setdiff1d(tail, self.positions("added"))][list(self.key)]

    def deletes(self) -> pd.DataFrame:
        """The key columns of the deleted rows (keyed diffs only)."""
        if not self.keyed:
            raise ValueError("rows are deleted by key: this diff has no key")
        rows = self._listed()
        deleted = rows.filter(pa.compute.equal(rows.column("change"), "deleted"))
        return deleted.select(list(self.key)).to_pandas()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _register(con: duckdb.DuckDBPyConnection, name: str, side: Side | None, like: str) -> None:
    """``side`` as view ``name`` with its row positions in ``_ROW``; None: no rows, the
    columns of view ``like``."""
    if side is None:
        con.sql(f"create view {name} as select * from {like} where false")
    elif isinstance(side, Path | str):
        rel = con.read_parquet(str(side), file_row_number=True)
        rel.create_view(f"{name}_file")
        con.sql(
            f"create view {name} as select * exclude (file_row_number),"
            f" file_row_number as {_ROW} from {name}_file"
        )
    else:
        table = (
            pa.Table.from_pandas(side, preserve_index=False)
            if isinstance(side, pd.DataFrame)
            else side
        )
        table = table.append_column(_ROW, pa.array(np.arange(len(table), dtype=np.int64)))
        con.register(f"{name}_arrow", table)
        con.sql(f"create view {name} as select * from {name}_arrow")


def _columns(con: duckdb.DuckDBPyConnection, view: str) -> dict[str, str]:
    rel = con.table(view)
    return {c: str(t) for c, t in zip(rel.columns, rel.types, strict=True) if c != _ROW}


def _expressions(old: dict[str, str], new: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Per column (new's order, then old's extras): the old and new side's expression,
    of one type on both sides."""
    out = {}
    for name in [*new, *(c for c in old if c not in new)]:
        q = _quote(name)
        was, now = old.get(name), new.get(name)
        if was is None:
            out[name] = (f"cast(null as {now})", q)
        elif now is None:
            out[name] = (q, f"cast(null as {was})")
        elif was == now:
            out[name] = (q, q)
        else:
            common = _common_type(was, now)
            out[name] = (f"cast({q} as {common})", f"cast({q} as {common})")
    return out


def diff(old: Side | None, new: Side, key: Sequence[str] = (), *, listed: bool = True) -> RowDiff:
    """Rows of ``new`` added, changed (by key) and deleted since ``old`` (None: no rows).

    ``key``: the primary-key columns (empty: match whole rows). ``listed``: keep the
    changes themselves (``RowDiff.rows``), not just their counts. Raises DiffError when a
    key column is missing from ``new``, a key repeats on either side, or DuckDB cannot
    read a side.
    """
    key = tuple(key)
    con = duckdb.connect()
    try:
        _register(con, "new_side", new, like="")
        _register(con, "old_side", old, like="new_side")
        old_cols, new_cols = _columns(con, "old_side"), _columns(con, "new_side")
        missing = [k for k in key if k not in new_cols]
        if missing:
            raise DiffError(f"the key column(s) {', '.join(missing)} are not in the new rows")
        exprs = _expressions(old_cols, new_cols)
        sizes = (_count(con, "old_side"), _count(con, "new_side"))
        if key:
            return _keyed(con, key, exprs, sizes, listed)
        return _whole_rows(con, exprs, sizes, listed)
    except duckdb.Error as exc:  # its message may quote a value: named by type only
        raise DiffError(f"the rows could not be compared ({type(exc).__name__})") from exc
    finally:
        con.close()


def _count(con: duckdb.DuckDBPyConnection, view: str) -> int:
    ((count,),) = con.sql(f"select count(*) from {view}").fetchall()
    return int(count)


def _hashes(exprs: dict[str, tuple[str, str]], side: int) -> str:
    return "hash(" + ", ".join(e[side] for e in exprs.values()) + ")"


def _keyed(
    con: duckdb.DuckDBPyConnection,
    key: tuple[str, ...],
    exprs: dict[str, tuple[str, str]],
    sizes: tuple[int, int],
    listed: bool,
) -> RowDiff:
    names = [f"k{i}" for i in range(len(key))]
    old_keys = ", ".join(f"{exprs[k][0]} as {n}" for k, n in zip(key, names, strict=True))
    new_keys = ", ".join(f"{exprs[k][1]} as {n}" for k, n in zip(key, names, strict=True))
    on = " and ".join(f"o.{n} = n.{n}" for n in names)
    keys_out = ", ".join(
        f"coalesce(o.{n}, n.{n}) as {_quote(k)}" for k, n in zip(key, names, strict=True)
    )
    # 0 same, 1 added, 2 changed, 3 deleted; the matched pairs are counted too (more
    # pairs than rows: a key repeats)
    joined = f"""
        with o as (select {old_keys}, {_ROW} as r, {_hashes(exprs, 0)} as h from old_side),
        n as (select {new_keys}, {_ROW} as r, {_hashes(exprs, 1)} as h from new_side),
        j as {"materialized" if listed else ""} (
            select case when o.r is null then 1 when n.r is null then 3
                        when o.h <> n.h then 2 else 0 end as code,
                   o.r as old_row, n.r as new_row, {keys_out}
            from o full outer join n on {on}
        )
    """
    table = None
    in_order = in_place = None
    if listed:  # one pass: the changes, one row with the count of the same rows and one
        # (code 4) with, as old_row, the first new row that is not an old row kept in
        # order (a change, or a same row whose old position is before the previous new
        # row's) and, as new_row, 1 if new is old changed in place: no matched row before
        # the previous matched one in the old order, no added row before a matched one
        nulls = ", ".join("null" for _ in key)
        table = con.sql(
            f"{joined} select * from j where code <> 0"
            f" union all select 0, count(*), null, {nulls} from j where code = 0"
            " union all select 4, min(new_row) filter (where code <> 0 or back),"
            "   (not coalesce(bool_or(matched_back), false) and coalesce("
            "     max(new_row) filter (where code <> 1) < min(new_row) filter (where code = 1),"
            f"    true))::bigint, {nulls}"
            " from ("
            "   select new_row, code, old_row < lag(old_row) over (order by new_row) as back,"
            "     old_row < lag(old_row) over (partition by code = 1 order by new_row)"
            "       as matched_back"
            "   from j where new_row is not null"
            " )"
        ).to_arrow_table()
        codes = table.column("code").to_numpy(zero_copy_only=False)
        first = table.column("old_row").to_numpy(zero_copy_only=False)
        counts = {0: int(first[codes == 0].sum())}
        (first_moved,) = first[codes == 4]
        in_order = sizes[1] if pd.isna(first_moved) else int(first_moved)
        (in_place_flag,) = table.column("new_row").to_numpy(zero_copy_only=False)[codes == 4]
        in_place = bool(in_place_flag)
        table = table.filter(pa.compute.less(table.column("code"), 4))
        table = table.filter(pa.compute.not_equal(table.column("code"), 0))
        codes = table.column("code").to_numpy(zero_copy_only=False)
        counts |= {c: int((codes == c).sum()) for c in (1, 2, 3)}
    else:
        counts = dict(con.sql(f"{joined} select code, count(*) from j group by code").fetchall())
    same, added, changed, deleted = (int(counts.get(c, 0)) for c in range(4))
    before, after = sizes
    if same + changed + added != after or same + changed + deleted != before:
        raise DiffError(
            f"a primary key ({', '.join(key)}) repeats in the old or new rows: "
            "rows cannot be matched by it"
        )
    return RowDiff(
        key, before, after, added, changed, deleted, _labelled(table), in_order, in_place
    )


def _whole_rows(
    con: duckdb.DuckDBPyConnection,
    exprs: dict[str, tuple[str, str]],
    sizes: tuple[int, int],
    listed: bool,
) -> RowDiff:
    """Multiset difference: the i-th copy of a row in ``new`` matches the i-th in ``old``."""
    joined = f"""
        with o as (select {_ROW} as r, {_hashes(exprs, 0)} as h from old_side),
        n as (select {_ROW} as r, {_hashes(exprs, 1)} as h from new_side),
        oi as (select r, h, row_number() over (partition by h order by r) as i from o),
        ni as (select r, h, row_number() over (partition by h order by r) as i from n),
        j as (
            select case when oi.r is null then 1 else 3 end as code,
                   oi.r as old_row, ni.r as new_row
            from oi full outer join ni on oi.h = ni.h and oi.i = ni.i
            where oi.r is null or ni.r is null
        )
    """
    if listed:
        table = con.sql(f"{joined} select * from j").to_arrow_table()
        codes = table.column("code").to_numpy(zero_copy_only=False)
        added, deleted = int((codes == 1).sum()), int((codes == 3).sum())
    else:
        table = None
        ((added, deleted),) = con.sql(
            f"{joined} select count(*) filter (where code = 1), count(*) filter (where code = 3)"
            " from j"
        ).fetchall()
    before, after = sizes
    return RowDiff((), before, after, int(added), None, int(deleted), _labelled(table))


def _labelled(table: pa.Table | None) -> pa.Table | None:
    if table is None:
        return None
    codes = table.column("code").to_numpy(zero_copy_only=False)
    labels = np.array(["same", "added", "changed", "deleted"], dtype=object)[codes]
    return table.drop_columns(["code"]).add_column(0, "change", pa.array(labels, pa.string()))
