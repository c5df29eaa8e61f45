"""The Socrata test server's in-memory datasets: columns, rows, metadata, one lock.

Values are kept in the form SODA 2.x returns them (https://dev.socrata.com/docs/datatypes/):
numbers, text and timestamps as strings, checkbox as a JSON boolean, point as GeoJSON, url
as ``{"url", "description"}``; a null is an absent key (the recordings never show
``null``). Every write builds its result off to the side and swaps it in under the lock, so
a reader sees a replace or an upsert whole or not at all.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from tests.socrata import soql

# dataTypeName (view document) -> the type name SODA 2 puts in X-SODA2-Types. Recordings
# decided this: ours show the view's ``calendar_date`` as ``floating_timestamp`` in the
# header; responses of soda.demo.socrata.com recorded in the socratadata R package's tests
# show ``checkbox`` as ``boolean`` and money/percent columns as ``number``.
SODA2_TYPE = {
    "calendar_date": "floating_timestamp",
    "checkbox": "boolean",
    "money": "number",
    "percent": "number",
}
NUMERIC = ("number", "double", "money", "percent")
SYSTEM_FIELDS = {
    ":id": "row_identifier",
    ":created_at": "fixed_timestamp",
    ":updated_at": "fixed_timestamp",
}
_WKT_POINT = re.compile(r"POINT\s*\(\s*(-?[\d.]+)\s+(-?[\d.]+)\s*\)", re.IGNORECASE)
_COLUMN_IDS = itertools.count(500_000_001)
_SIDS = itertools.count(1)


class RowError(ValueError):
    """A written row Socrata would refuse; the message names the row and the field."""


def new_four_by_four() -> str:
    alphabet = "23456789abcdefghijkmnpqrstuvwxyz"
    pick = "".join(secrets.choice(alphabet) for _ in range(8))
    return f"{pick[:4]}-{pick[4:]}"


def normalize(value: Any, data_type: str, where: str) -> Any:
    """One written value in SODA 2 output form, or None for a null."""
    if value is None:
        return None
    if data_type in NUMERIC:
        if isinstance(value, bool):
            raise RowError(f"{where}: a boolean is not a number")
        try:
            Decimal(str(value))
        except InvalidOperation:
            raise RowError(f"{where}: {data_type} expected") from None
        return str(value)
    if data_type == "checkbox":
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "false"):
            return str(value).lower() == "true"
        raise RowError(f"{where}: checkbox expected")
    if data_type == "point":
        return _point(value, where)
    if data_type in ("calendar_date", "floating_timestamp"):
        return _floating_timestamp(value, where)
    if data_type == "url":
        return value if isinstance(value, dict) else {"url": str(value)}
    if isinstance(value, dict | list):
        raise RowError(f"{where}: {data_type} expected, got an object")
    return str(value)


def _floating_timestamp(value: Any, where: str) -> str:
    """Any ISO 8601 local date-time in; out as the recordings show it: milliseconds, no zone."""
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise RowError(f"{where}: a floating timestamp (ISO 8601) expected") from None
    if parsed.tzinfo is not None:
        raise RowError(f"{where}: a floating timestamp has no time zone")
    return parsed.isoformat(timespec="milliseconds")


def _point(value: Any, where: str) -> dict[str, Any]:
    """GeoJSON or WKT in, GeoJSON out (https://dev.socrata.com/docs/datatypes/point)."""
    if isinstance(value, dict) and value.get("type") == "Point":
        coordinates = value.get("coordinates")
    else:
        match = _WKT_POINT.fullmatch(str(value).strip())
        coordinates = [float(match[1]), float(match[2])] if match else None
    if not isinstance(coordinates, list) or len(coordinates) != 2:
        raise RowError(f"{where}: a point expected (GeoJSON or WKT 'POINT (lon lat)')")
    return {"type": "Point", "coordinates": coordinates}


@dataclass
class Column:
    field_name: str
    data_type: str
    name: str = ""
    description: str = ""
    id: int = field(default_factory=lambda: next(_COLUMN_IDS))

    @property
    def soda2_type(self) -> str:
        return SODA2_TYPE.get(self.data_type, self.data_type)


@dataclass
class Record:
    seq: int
    values: dict[str, Any]
    created_at: str
    updated_at: str

    @property
    def sid(self) -> str:
        # Socrata's internal row ids look like row-xxxx~xxxx~xxxx; only their order matters.
        return f"row-{self.seq:012d}"


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


@dataclass
class Dataset:
    id: str
    name: str
    columns: list[Column]
    row_identifier: str | None = None
    records: dict[str, Record] = field(default_factory=dict)
    view: dict[str, Any] = field(default_factory=dict)
    public: bool = True
    published: bool = True
    attachments: dict[str, tuple[str, bytes]] = field(
        default_factory=dict
    )  # assetId -> (name, data)
    rows_updated_at: int = field(default_factory=lambda: int(time.time()))

    @property
    def types(self) -> dict[str, str]:
        return {c.field_name: c.data_type for c in self.columns}

    def column(self, field_name: str) -> Column | None:
        return next((c for c in self.columns if c.field_name == field_name), None)

    def clean_row(self, row: Mapping[str, Any], index: int) -> dict[str, Any]:
        types = self.types
        out: dict[str, Any] = {}
        for key, value in row.items():
            if key.startswith(":"):
                continue
            if key not in types:
                raise RowError(f"row {index}: no column named {key!r} in dataset {self.id}")
            cleaned = normalize(value, types[key], f"row {index}, field {key!r}")
            if cleaned is not None:
                out[key] = cleaned
        return out


@dataclass
class WriteResult:
    """The body Socrata returns for upsert and replace (dev.socrata.com/publishers/soda-producer/upsert)."""

    created: int = 0
    updated: int = 0
    deleted: int = 0
    by_row_identifier: int = 0
    by_sid: int = 0
    errors: int = 0

    def body(self) -> dict[str, int]:
        return {
            "By RowIdentifier": self.by_row_identifier,
            "Rows Updated": self.updated,
            "Rows Deleted": self.deleted,
            "Rows Created": self.created,
            "Errors": self.errors,
            "By SID": self.by_sid,
        }


@dataclass
class Query:
    select: str | None = None
    where: str | None = None
    order: str | None = None
    limit: int = 1000
    offset: int = 0
    system_fields: bool = False


class Store:
    """All datasets of one test server."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.datasets: dict[str, Dataset] = {}

    def create(
        self,
        columns: Iterable[tuple[str, str]],
        *,
        name: str = "test dataset",
        row_identifier: str | None = None,
        dataset_id: str | None = None,
        view: dict[str, Any] | None = None,
        published: bool = True,
    ) -> Dataset:
        cols = [Column(f, t, name=f) for f, t in columns]
        if row_identifier is not None and row_identifier not in {c.field_name for c in cols}:
            raise RowError(f"row identifier {row_identifier!r} is not a column")
        dataset = Dataset(
            dataset_id or new_four_by_four(),
            name,
            cols,
            row_identifier,
            view=dict(view or {}),
            published=published,
        )
        with self.lock:
            self.datasets[dataset.id] = dataset
        return dataset

    def get(self, dataset_id: str) -> Dataset | None:
        with self.lock:
            return self.datasets.get(dataset_id)

    def drop(self, dataset_id: str) -> bool:
        with self.lock:
            return self.datasets.pop(dataset_id, None) is not None

    def upsert(self, dataset: Dataset, rows: Sequence[Mapping[str, Any]]) -> WriteResult:
        """Create/update by row identifier (or ``:id`` when the dataset has none);
        ``":deleted": true`` deletes. The new row set is swapped in whole."""
        result = WriteResult()
        with self.lock:
            records = dict(dataset.records)
            by_key = self._key_index(dataset, records)
            for index, row in enumerate(rows):
                if not isinstance(row, Mapping):
                    raise RowError(f"row {index}: a JSON object expected")
                self._upsert_one(dataset, records, by_key, row, index, result)
            dataset.records = records
            dataset.rows_updated_at = int(time.time())
        return result

    @staticmethod
    def _key_index(dataset: Dataset, records: dict[str, Record]) -> dict[str, str]:
        if dataset.row_identifier is None:
            return {}
        key = dataset.row_identifier
        return {str(r.values[key]): sid for sid, r in records.items() if key in r.values}

    def _upsert_one(
        self,
        dataset: Dataset,
        records: dict[str, Record],
        by_key: dict[str, str],
        row: Mapping[str, Any],
        index: int,
        result: WriteResult,
    ) -> None:
        sid, via_identifier = self._match(dataset, by_key, row, index)
        values = dataset.clean_row(row, index)
        if row.get(":deleted") is True:
            if sid is not None and records.pop(sid, None) is not None:
                result.deleted += 1
                result.by_row_identifier += via_identifier
                result.by_sid += not via_identifier
                by_key.pop(str(values.get(dataset.row_identifier or "", "")), None)
            return
        now = _now_iso()
        if sid is not None and sid in records:
            old = records[sid]
            # POST updates only the fields sent (dev.socrata.com/publishers/soda-producer/upsert);
            # a field sent as null is cleared, so a full row can unset a value (no recording
            # shows Socrata's answer to a null; this is the reading civicflow relies on).
            cleared = {k for k, v in row.items() if v is None and not k.startswith(":")}
            kept = {k: v for k, v in old.values.items() if k not in cleared}
            records[sid] = Record(old.seq, {**kept, **values}, old.created_at, now)
            result.updated += 1
            result.by_row_identifier += via_identifier
            result.by_sid += not via_identifier
            return
        record = Record(next(_SIDS), values, now, now)
        records[record.sid] = record
        if dataset.row_identifier is not None:
            by_key[str(values[dataset.row_identifier])] = record.sid
        result.created += 1

    @staticmethod
    def _match(
        dataset: Dataset, by_key: dict[str, str], row: Mapping[str, Any], index: int
    ) -> tuple[str | None, bool]:
        key = dataset.row_identifier
        if key is None:
            sid = row.get(":id")
            return (str(sid) if sid is not None else None), False
        if row.get(key) is None:
            raise RowError(f"row {index}: row identifier {key!r} is missing")
        column = dataset.column(key)
        value = normalize(row[key], column.data_type if column else "text", f"row {index}")
        return by_key.get(str(value)), True

    @staticmethod
    def records_of(dataset: Dataset, rows: Sequence[dict[str, Any]]) -> dict[str, Record]:
        """New records from rows already in SODA 2 output form (a DSMAPI output schema's
        converted rows): what an upsert into an empty dataset builds, without converting
        each value a second time. A repeated row identifier updates the earlier row."""
        now, key = _now_iso(), dataset.row_identifier
        records: dict[str, Record] = {}
        by_key: dict[str, str] = {}
        for index, values in enumerate(rows):
            if key is None:
                record = Record(next(_SIDS), values, now, now)
                records[record.sid] = record
                continue
            if values.get(key) is None:
                raise RowError(f"row {index}: row identifier {key!r} is missing")
            sid = by_key.get(str(values[key]))
            if sid is not None:
                old = records[sid]
                records[sid] = Record(old.seq, {**old.values, **values}, old.created_at, now)
                continue
            record = Record(next(_SIDS), values, now, now)
            records[record.sid] = record
            by_key[str(values[key])] = record.sid
        return records

    def replace(self, dataset: Dataset, rows: Sequence[Mapping[str, Any]]) -> WriteResult:
        """PUT: the dataset becomes exactly ``rows`` (dev.socrata.com/publishers/soda-producer/replace)."""
        fresh = Dataset(dataset.id, dataset.name, dataset.columns, dataset.row_identifier)
        result = Store().upsert(fresh, rows)
        with self.lock:
            dataset.records = fresh.records
            dataset.rows_updated_at = int(time.time())
        return result

    def delete_row(self, dataset: Dataset, row_id: str) -> bool:
        """DELETE /resource/{id}/{row_id}: by row identifier value, else by ``:id``."""
        with self.lock:
            records = dict(dataset.records)
            sid = self._key_index(dataset, records).get(row_id, row_id)
            if records.pop(sid, None) is None:
                return False
            dataset.records = records
            return True

    def query(self, dataset: Dataset, query: Query) -> tuple[list[str], list[dict[str, Any]]]:
        """The fields returned and the page of rows, per https://dev.socrata.com/docs/queries/."""
        with self.lock:
            records = list(dataset.records.values())
        types = {**dataset.types, **SYSTEM_FIELDS}
        base = [c.field_name for c in dataset.columns]
        fields = soql.parse_select(query.select, [*base, *SYSTEM_FIELDS]) if query.select else base
        if query.system_fields and not query.select:
            fields = [*fields, *SYSTEM_FIELDS]
        where = soql.parse_where(query.where, types) if query.where else None
        order = soql.parse_order(query.order, types) if query.order else []
        window = slice(query.offset, query.offset + query.limit)
        if where is None and order in ([], [(":id", False)]):
            # Insertion order is :id order: page first, so each page of a paging client is cheap.
            rows = [self._with_system_fields(r) for r in records[window]]
        else:
            rows = [self._with_system_fields(r) for r in records]
            rows = [r for r in rows if where(r) is True] if where else rows
            rows = self._ordered(rows, order, types)[window]
        return fields, [{f: r[f] for f in fields if f in r} for r in rows]

    @staticmethod
    def _with_system_fields(record: Record) -> dict[str, Any]:
        return {
            **record.values,
            ":id": record.sid,
            ":created_at": record.created_at,
            ":updated_at": record.updated_at,
        }

    @staticmethod
    def _ordered(
        rows: list[dict[str, Any]], keys: list[tuple[str, bool]], types: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        # Stable sorts from the last key to the first. Nulls come first when ascending: the
        # recordings do not show Socrata's choice.
        for name, descending in reversed(keys):
            rows = sorted(rows, key=_sort_key(name, types[name]), reverse=descending)
        return rows


def _sort_key(name: str, data_type: str) -> Callable[[Mapping[str, Any]], tuple[bool, Any]]:
    def key(row: Mapping[str, Any]) -> tuple[bool, Any]:
        value = row.get(name)
        return value is not None, soql.compare_key(value, data_type) if value is not None else 0

    return key


def csv_cell(value: Any) -> str:
    """How a SODA 2 CSV shows one value."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict) and value.get("type") == "Point":
        lon, lat = value["coordinates"][:2]
        return f"POINT ({lon} {lat})"
    if isinstance(value, dict):
        return str(value.get("url", json.dumps(value)))
    return str(value)
