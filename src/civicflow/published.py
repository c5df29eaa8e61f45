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
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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

    Hashing pandas' vectorised per-row hashes keeps this fast on a million rows.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
    row_hashes = pd.util.hash_pandas_object(frame, index=False, categorize=False)
    digest.update(row_hashes.to_numpy().tobytes())
    return digest.hexdigest()


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
    folder = _dir(settings, dataset_id)
    path = folder / f"{version}.parquet"
    with private_file(path) as out:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), out, compression="zstd")
    manifest = Manifest(
        dataset_id=dataset_id,
        version=version,
        run_id=run_id,
        rows=len(frame),
        sha256=file_sha256(path),
        published_at=published_at or datetime.now(UTC).isoformat(timespec="seconds"),
        path=path,
        columns=[str(c) for c in frame.columns],
        data_version=data_version,
        metadata=metadata,
    )
    text = json.dumps(manifest.to_dict(), indent=2, default=str).encode()
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
