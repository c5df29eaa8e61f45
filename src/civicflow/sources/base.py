"""The Source protocol and registry: one module per source kind, registered by name.

A source turns a raw file (already copied, untouched, under ``var/raw``) into an Arrow
table whose columns are the *source* headers and whose values are all strings (or
null). Typing, renaming and validation are shared by every kind (``cast.py``,
``quality/``), so a new kind only has to know how to read its format.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol, runtime_checkable

import pandas as pd
import pyarrow as pa

from civicflow.spec.models import DatasetSpec

if TYPE_CHECKING:
    from civicflow.settings import Settings


class ExtractError(Exception):
    """The raw input cannot be read at all (encoding, empty file, ragged rows, ...).

    The message is public (it becomes the ledger reason the scorecard shows): it names
    the file, row, column or byte offset, never a value from the file nor a secret.
    Anything that may quote the source (a parser's own message, a header, a value)
    goes in ``detail``, which only the private run report holds.
    """

    def __init__(self, message: str, detail: str | None = None):
        super().__init__(message)
        self.detail = detail


class SourceUnchanged(Exception):
    """The source says nothing changed since the last run (HTTP 304): nothing to extract.

    The run ends as ``unchanged`` without a raw copy or any portal write.
    """


class Source(Protocol):
    kind: ClassVar[str]
    #: file suffix of the immutable raw copy (".csv", ".geojson", ...)
    suffix: ClassVar[str]

    def read(self, spec: DatasetSpec, raw_path: Path) -> pa.Table:
        """Read the raw copy into an all-string Arrow table keyed by source headers."""
        ...


@runtime_checkable
class BatchSource(Source, Protocol):
    """A file kind that can also be read a batch of rows at a time (the streaming run)."""

    def read_batches(self, spec: DatasetSpec, raw_path: Path, rows: int) -> Iterator[pa.Table]:
        """The raw copy as all-string tables of ``rows`` rows in file order (the last may
        be shorter): the tables ``read`` gives, concatenated, with the same errors."""
        ...


@runtime_checkable
class RemoteSource(Source, Protocol):
    """A source pulled from a service (Socrata, ...) rather than read from a file.

    ``pull`` yields the bytes of the raw copy; ``extract`` writes them with the same
    private, owner-read-only writer as a copied file, so a kind never handles ``var/``.
    """

    def pull(
        self, spec: DatasetSpec, settings: Settings, since: str | None = None
    ) -> Iterator[bytes]:
        """The raw copy's bytes, in order; raises ExtractError naming what failed.

        ``since`` (incremental specs only) is the stored watermark: a kind that can
        filter at the source pulls only rows whose ``spec.incremental.cursor`` is
        greater (extract filters again after typing, so a kind may ignore it). It is
        the cursor's published value as text: ISO 8601 for dates and datetimes
        (``2024-05-01T13:45:00``), digits for integers.
        """
        ...


_REGISTRY: dict[str, Source] = {}
#: the built-in kinds, imported on first use: a CLI call that reads a CSV never pays for
#: the Excel and PostgreSQL drivers (each module registers itself when imported)
_BUILTIN = {
    kind: f"civicflow.sources.{kind}"
    for kind in ("csv", "excel", "geojson", "http", "postgres", "socrata")
}


def register_source(kind: str) -> Callable[[type], type]:
    def decorate(cls: type) -> type:
        cls.kind = kind  # type: ignore[attr-defined]
        _REGISTRY[kind] = cls()
        return cls

    return decorate


def get_source(kind: str) -> Source:
    if kind not in _REGISTRY and kind in _BUILTIN:
        importlib.import_module(_BUILTIN[kind])
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise ExtractError(
            f"no source kind {kind!r} (registered: {', '.join(registered_sources())})"
        ) from None


def registered_sources() -> list[str]:
    return sorted(set(_REGISTRY) | set(_BUILTIN))


@dataclass
class Extract:
    """One run's extract: the raw copy, its hash, the string table and the typed frame.

    ``frame`` is indexed by 1-based data row number (row 1 is the first row after the
    header), so every check can name the rows it failed on.
    """

    dataset_id: str
    run_id: str
    raw_path: Path
    sha256: str
    raw: pa.Table
    frame: pd.DataFrame
    #: when the source says its data last changed (the file's modification time, an HTTP
    #: Last-Modified), ISO 8601 UTC; None when it does not say
    source_modified: str | None = None

    @property
    def rows(self) -> int:
        return self.raw.num_rows
