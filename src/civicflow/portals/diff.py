"""Compute a publish plan by comparing what a publish would send with the live table.

An adapter reads the live state of a table through its portal (:class:`LiveState`:
the version record, the columns with the portal's types, the stored metadata and,
when the rows may differ, the live rows) and :func:`make_plan` compares it with what
a publish would send. Rows are compared by primary key and a row hash: both sides are
first brought to one canonical typed form per declared field type (the portal may
hold a datetime as ISO text, the frame as a timestamp), then hashed with pandas'
vectorised ``hash_pandas_object`` and joined on the key with one ``merge``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa

from civicflow.portals.base import PortalError, PublishedVersion, TableMetadata, published_version
from civicflow.portals.plan import PublishPlan, RowChanges, SchemaChanges
from civicflow.spec.models import FieldSpec

#: metadata keys compared one by one (``columns`` and ``extra`` are compared per entry)
METADATA_KEYS = ("title", "description", "license", "source", "source_url")


@dataclass(frozen=True)
class LiveState:
    """A table as its portal holds it now; ``version`` None: never published."""

    version: PublishedVersion | None
    #: (name, the portal's type) in the portal's column order
    columns: list[tuple[str, str]] = field(default_factory=list)
    #: the metadata stored with the live version (None when the portal keeps none)
    metadata: dict[str, Any] | None = None
    #: the live rows, read only when the rows may differ (None otherwise)
    rows: pa.Table | None = None


def make_plan(
    table: str,
    frame: pd.DataFrame,
    *,
    fields: list[FieldSpec],
    primary_key: list[str],
    version: str,
    metadata: TableMetadata,
    payload: dict[str, Any],
    live: LiveState,
    portal_type: Callable[[FieldSpec], str],
) -> PublishPlan:
    """Compare what a publish would send with ``live``; ``payload`` is ``metadata`` as the
    portal stores it, ``portal_type`` the column type the portal gives a field."""
    target = published_version(version, metadata)
    new_columns = [(f.name, portal_type(f)) for f in fields]
    current = live.version
    if current is None:
        rows = RowChanges(0, len(frame), True, len(frame), 0, 0) if primary_key else None
        return PublishPlan(
            table,
            False,
            None,
            target,
            rows or RowChanges(0, len(frame), True),
            SchemaChanges(added=[n for n, _ in new_columns]),
            metadata_changes(None, payload),
        )
    return PublishPlan(
        table,
        True,
        current.version,
        target,
        _row_changes(frame, fields, primary_key, version, live),
        schema_changes(live.columns, new_columns),
        metadata_changes(live.metadata, payload),
    )


def _row_changes(
    frame: pd.DataFrame,
    fields: list[FieldSpec],
    primary_key: list[str],
    version: str,
    live: LiveState,
) -> RowChanges:
    assert live.version is not None
    before = live.version.rows
    same = live.version.data_version == version
    if same:
        keyed = (0, 0, 0) if primary_key else (None, None, None)
        return RowChanges(before, len(frame), False, *keyed)
    if not primary_key:
        return RowChanges(before, len(frame), True)
    if live.rows is None:
        raise PortalError("the live rows are needed to plan a keyed publish and were not read")
    old = canonical(live.rows.to_pandas(), fields)
    new = canonical(frame, fields)
    added, updated, deleted = keyed_changes(old, new, primary_key)
    return RowChanges(before, len(frame), True, added, updated, deleted)


def canonical(frame: pd.DataFrame, fields: list[FieldSpec]) -> pd.DataFrame:
    """``frame`` with one dtype per declared field type, whatever form it came in.

    The portal's text (ISO datetimes, ``true``/``false``) and the pipeline's typed
    columns become the same values here, so equal rows hash equal. A value that does
    not parse (a column retyped since the live version) becomes null: that row changes.
    A field the live table lacks is all null.
    """
    out = {}
    for f in fields:
        column = frame[f.name] if f.name in frame.columns else pd.Series(None, index=frame.index)
        out[f.name] = _as_type(column, str(f.type))
    return pd.DataFrame(out, index=frame.index)


def _as_type(column: pd.Series, kind: str) -> pd.Series:
    if kind == "integer":
        if pd.api.types.is_integer_dtype(column.dtype):
            return column.astype("Int64")  # not through floats: ids above 2**53 stay exact
        number = pd.to_numeric(column, errors="coerce").astype("Float64")
        return number.where(number == number.round()).astype("Int64")
    if kind == "number":
        return pd.to_numeric(column, errors="coerce").astype("float64")
    if kind == "boolean":
        if pd.api.types.is_bool_dtype(column.dtype):
            return column.astype("boolean")
        text = column.astype("str").str.lower()
        return text.map({"true": True, "false": False, "1": True, "0": False}).astype("boolean")
    if kind in ("date", "datetime"):
        when = _timestamps(column)
        return when.dt.normalize() if kind == "date" else when
    return column.astype("str")


def _timestamps(column: pd.Series) -> pd.Series:
    """UTC timestamps to the millisecond, the finest a publish writes (wire_frame);
    naive values are taken as written (as UTC)."""
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        when = column if column.dt.tz is not None else column.dt.tz_localize("UTC")
        when = when.dt.tz_convert("UTC")
    else:
        when = pd.to_datetime(column, format="ISO8601", utc=True, errors="coerce")
    return when.dt.as_unit("us").dt.floor("ms")


def keyed_changes(
    old: pd.DataFrame, new: pd.DataFrame, primary_key: list[str]
) -> tuple[int, int, int]:
    """(added, updated, deleted) by primary key, comparing whole-row hashes."""
    for side, rows in (("live", old), ("new", new)):
        duplicated = int(rows.duplicated(primary_key).sum())
        if duplicated:
            raise PortalError(
                f"the {side} rows repeat a primary key ({', '.join(primary_key)}) "
                f"{duplicated:,} times; a publish would be refused"
            )
    left = old[primary_key].assign(_hash=pd.util.hash_pandas_object(old, index=False).to_numpy())
    right = new[primary_key].assign(_hash=pd.util.hash_pandas_object(new, index=False).to_numpy())
    joined = left.merge(right, on=primary_key, how="outer", indicator=True)
    where = joined["_merge"]
    both = where == "both"
    updated = int((joined["_hash_x"][both] != joined["_hash_y"][both]).sum())
    return int((where == "right_only").sum()), updated, int((where == "left_only").sum())


def schema_changes(live: list[tuple[str, str]], new: list[tuple[str, str]]) -> SchemaChanges:
    """Columns added, removed and retyped (by the portal's types), and order."""
    was, now = dict(live), dict(new)
    common_was = [n for n, _ in live if n in now]
    common_now = [n for n, _ in new if n in was]
    return SchemaChanges(
        added=[n for n, _ in new if n not in was],
        removed=[n for n, _ in live if n not in now],
        retyped=[(n, was[n], now[n]) for n in common_now if was[n] != now[n]],
        reordered=common_was != common_now,
    )


def metadata_changes(live: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """Names of the metadata entries that differ; ``columns.<name>``, ``extra.<key>``."""
    old = live or {}
    changed = [k for k in METADATA_KEYS if old.get(k) != new.get(k)]
    for group in ("columns", "extra"):
        was, now = old.get(group) or {}, new.get(group) or {}
        changed += [f"{group}.{k}" for k in sorted(set(was) | set(now)) if was.get(k) != now.get(k)]
    return changed
