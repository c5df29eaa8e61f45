"""Published versions kept as Parquet, so metrics read what residents actually got.

``var/published/<id>/<version>.parquet`` plus ``<version>.json`` (the manifest) and
``latest.json``. Files are written to a temporary name and renamed, so a reader never
sees half a version.

``version`` is the portal's published version (rows and metadata); the manifest also
keeps the rows' own hash (``data_version``) and the metadata published with them.
The pipeline writes a copy whenever the portal's version changes, and rewrites it
when the copy lags the portal (see :func:`lags`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from civicflow.privatefs import private_file, write_private
from civicflow.settings import Settings


@dataclass(frozen=True)
class Manifest:
    """What one published version is: its content hash, rows and file."""

    dataset_id: str
    version: str
    run_id: str
    rows: int
    sha256: str
    published_at: str
    path: Path
    columns: list[str]
    data_version: str | None = None
    metadata: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["path"] = self.path.name
        return data


def content_version(frame: pd.DataFrame) -> str:
    """sha256 of the table's content (values, column names and types, row order).

    Hashing per-row hashes (``row_hashes``) keeps this fast on a million rows.
    """
    hasher = ContentHasher()
    hasher.update(frame)
    return hasher.hexdigest()


def row_hashes(frame: pd.DataFrame) -> np.ndarray:
    """One uint64 per row over all its values, in row order: DuckDB's ``hash`` over the
    rows as Arrow (C++, a fifth of pandas' time on Arrow-backed text, which pandas hashes
    through Python objects). A frame Arrow cannot hold (mixed Python objects in a
    column) is hashed by pandas."""
    import duckdb

    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        hashed = pd.util.hash_pandas_object(frame, index=False, categorize=False)
        return hashed.to_numpy(dtype=np.uint64)
    if table.num_columns == 0:
        return np.zeros(table.num_rows, dtype=np.uint64)
    # positional names: a frame's labels may repeat or need quoting
    table = table.rename_columns([f"c{n}" for n in range(table.num_columns)])
    columns = ", ".join(table.column_names)
    with duckdb.connect() as con:
        con.register("batch", table)
        hashed = con.sql(f"select hash({columns}) from batch").to_arrow_table()
    return hashed.column(0).to_numpy().astype(np.uint64, copy=False)


class ContentHasher:
    """``content_version`` of a table fed a batch of rows at a time, in row order: the
    same hash as the batches concatenated (the row hashes are per row)."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self._types: str | None = None

    def update(self, frame: pd.DataFrame) -> None:
        types = json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()])
        if self._types is None:
            self._types = types
            self._digest.update(types.encode())
        elif types != self._types:
            raise ValueError("the batches of one table have different columns or types")
        self._digest.update(row_hashes(frame).tobytes())

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def empty_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Per column, the values that are null or empty text (vectorised, one pass each):
    what the catalog shows as the share of empty values. Counts add up over batches."""
    counts = {}
    for name in frame.columns:
        column = frame[name]
        empty = int(column.isna().sum())
        if pd.api.types.is_string_dtype(column.dtype) or pd.api.types.is_object_dtype(column.dtype):
            empty += int(column.eq("").sum())
        counts[str(name)] = empty
    return counts


class CopyWriter:
    """A version's Parquet copy written a batch at a time while its rows are checked
    (bounded memory), in the form ``write_version`` gives a whole frame; ``keep_file``
    makes it a version once the portal has it live.

    Use as a context manager: the file is complete only when the block ends without an
    error (``private_file``: written to a temporary name, renamed on success)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0
        self.columns: list[str] = []
        self._writer: pq.ParquetWriter | None = None
        self._schema: pa.Schema | None = None
        self._file: Any = None
        self._opened: Any = None

    def __enter__(self) -> CopyWriter:
        self._opened = private_file(self.path)
        self._file = self._opened.__enter__()
        return self

    def write(self, frame: pd.DataFrame) -> None:
        if self._schema is None:
            schema = pa.Schema.from_pandas(frame, preserve_index=False)
            # a column with no value in the first batch: text, as a later batch has it
            self._schema = pa.schema(
                [f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in schema],
                metadata=schema.metadata,
            )
            self._writer = pq.ParquetWriter(self._file, self._schema, compression="zstd")
            self.columns = [str(c) for c in frame.columns]
        assert self._writer is not None
        table = pa.Table.from_pandas(frame, schema=self._schema, preserve_index=False)
        self._writer.write_table(table)
        self.rows += len(frame)

    def __exit__(self, *exc: Any) -> None:
        try:
            if self._writer is not None:
                self._writer.close()
        finally:
            self._opened.__exit__(*exc)


def _dir(settings: Settings, dataset_id: str) -> Path:
    return settings.published_dir / dataset_id


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_version(
    settings: Settings,
    dataset_id: str,
    frame: pd.DataFrame,
    version: str,
    run_id: str,
    *,
    data_version: str | None = None,
    metadata: dict[str, Any] | None = None,
    published_at: str | None = None,
) -> Manifest:
    """Write the published table as Parquet with its manifest; make it the latest.

    ``published_at`` is when the portal made the version live (default: now).
    """
    path = _dir(settings, dataset_id) / f"{version}.parquet"
    with private_file(path) as out:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), out, compression="zstd")
    columns = [str(c) for c in frame.columns]
    return _keep(
        settings,
        dataset_id,
        path,
        version,
        run_id,
        len(frame),
        columns,
        data_version=data_version,
        metadata=metadata,
        published_at=published_at,
    )


def keep_file(
    settings: Settings,
    dataset_id: str,
    written: CopyWriter,
    version: str,
    run_id: str,
    *,
    data_version: str | None = None,
    metadata: dict[str, Any] | None = None,
    published_at: str | None = None,
) -> Manifest:
    """``write_version`` for a copy a ``CopyWriter`` wrote (moved into place, not copied)."""
    path = _dir(settings, dataset_id) / f"{version}.parquet"
    settings.private_dir(path.parent)
    os.replace(written.path, path)
    return _keep(
        settings,
        dataset_id,
        path,
        version,
        run_id,
        written.rows,
        written.columns,
        data_version=data_version,
        metadata=metadata,
        published_at=published_at,
    )


def _keep(
    settings: Settings,
    dataset_id: str,
    path: Path,
    version: str,
    run_id: str,
    rows: int,
    columns: list[str],
    **facts: Any,
) -> Manifest:
    """The manifest of the copy at ``path``, written beside it and as ``latest.json``."""
    manifest = Manifest(
        dataset_id=dataset_id,
        version=version,
        run_id=run_id,
        rows=rows,
        sha256=file_sha256(path),
        published_at=facts.get("published_at") or datetime.now(UTC).isoformat(timespec="seconds"),
        path=path,
        columns=columns,
        data_version=facts.get("data_version"),
        metadata=facts.get("metadata"),
    )
    text = json.dumps(manifest.to_dict(), indent=2, default=str).encode()
    folder = _dir(settings, dataset_id)
    write_private(folder / f"{version}.json", text)
    write_private(folder / "latest.json", text)
    return manifest


def chained_version(base_data_version: str, changes: pd.DataFrame) -> str:
    """The data version after upserting ``changes`` into the version ``base_data_version``.

    An incremental run holds only the changed rows, not the whole table, so its version
    chains the base with the changes' content version.
    """
    text = f"{base_data_version}\n{content_version(changes)}"
    return hashlib.sha256(text.encode()).hexdigest()


def upserted(base: pd.DataFrame, changes: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """``base`` with the rows of ``changes`` replacing those with the same key (added if new)."""
    kept = base.merge(changes[key].drop_duplicates(), on=key, how="left", indicator=True)
    kept = base[(kept["_merge"] == "left_only").to_numpy()]
    return pd.concat(
        [kept, changes.astype(base.dtypes.to_dict(), errors="ignore")], ignore_index=True
    )


def read_latest(settings: Settings, dataset_id: str) -> tuple[Manifest, pd.DataFrame] | None:
    """The latest Parquet copy and its rows (None when there is none)."""
    manifest = latest(settings, dataset_id)
    if manifest is None or not manifest.path.is_file():
        return None
    return manifest, pq.read_table(manifest.path).to_pandas()


def _read_manifest(folder: Path, name: str) -> Manifest:
    data = json.loads((folder / name).read_text())
    data["path"] = folder / data["path"]
    return Manifest(**data)


def latest(settings: Settings, dataset_id: str) -> Manifest | None:
    folder = _dir(settings, dataset_id)
    return _read_manifest(folder, "latest.json") if (folder / "latest.json").is_file() else None


def lags(settings: Settings, dataset_id: str, portal_version: str) -> bool:
    """Whether the latest Parquet copy is not the portal's live version (or is missing).

    True after a failure between the portal's swap and the copy (a crash, a full disk):
    the next run that holds the live rows writes the copy again.
    """
    manifest = latest(settings, dataset_id)
    return manifest is None or manifest.version != portal_version or not manifest.path.is_file()


def versions(settings: Settings, dataset_id: str) -> list[Manifest]:
    """Every published version, oldest first."""
    folder = _dir(settings, dataset_id)
    if not folder.is_dir():
        return []
    found = [
        _read_manifest(folder, p.name) for p in folder.glob("*.json") if p.name != "latest.json"
    ]
    return sorted(found, key=lambda m: (m.published_at, m.run_id))
