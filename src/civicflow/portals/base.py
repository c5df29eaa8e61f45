"""The Portal protocol: one adapter per portal kind, registered by name.

Flows never branch on the portal kind; they ask the registry for the adapter named
in the dataset spec and call the protocol. Every adapter implements all of it
(atomic replace, metadata, plan): there are no optional capabilities to check.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from types import EllipsisType
from typing import Any, ClassVar, Protocol, runtime_checkable

import pandas as pd

from civicflow.portals.plan import PublishPlan
from civicflow.settings import Settings
from civicflow.spec.models import FieldSpec


class PortalError(Exception):
    """The portal refused or failed a request. Messages never include tokens.

    ``status`` is the HTTP status when the portal answered (5xx is worth a retry).
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class PortalConflict(PortalError):
    """Another run published the table since this run began; nothing was changed.

    ``other_run`` names that run (None when the live table disappeared instead).
    """

    def __init__(self, message: str, other_run: str | None = None) -> None:
        super().__init__(message)
        self.other_run = other_run


@dataclass(frozen=True)
class PublishedVersion:
    """What a portal says is live for a table."""

    table: str
    version: str  # covers the rows AND the metadata (see published_version)
    rows: int
    run_id: str | None = None
    published_at: str | None = None
    #: the rows alone: sha256 of the content (published.content_version)
    data_version: str | None = None
    #: increases with every version of the table; what a compare-and-swap compares
    serial: int | None = None


@dataclass(frozen=True)
class TableMetadata:
    """Dataset-level metadata sent with a publish (the portal's dataset page)."""

    title: str
    description: str
    license: str | None = None
    source: str | None = None
    source_url: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def metadata_version(metadata: TableMetadata) -> str:
    """sha256 of the metadata as published (canonical JSON)."""
    text = json.dumps(asdict(metadata), sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def published_version(data_version: str, metadata: TableMetadata) -> str:
    """The published version: one id for the rows and the metadata shown with them.

    A new title or column description is a new version even when no row changed.
    """
    return hashlib.sha256(f"{data_version}\n{metadata_version(metadata)}".encode()).hexdigest()


@dataclass(frozen=True)
class PublishResult:
    table: str
    version: str  # the published version (rows and metadata)
    rows: int
    changed: bool  # False: the portal already held exactly this version
    url: str | None = None
    #: "data" (new rows went live), "metadata" (same rows, new metadata), None (unchanged)
    change: str | None = None
    published_at: str | None = None
    run_id: str | None = None  # the run that published the live version
    #: apply_changes only: rows written by key (created or replaced), None after a publish
    upserted: int | None = None
    #: apply_changes only: live rows removed by key (absent keys are not counted)
    deleted: int | None = None


@dataclass(frozen=True)
class RowChanges:
    """A change set for :meth:`Portal.apply_changes`: rows to write and keys to remove.

    ``upserts`` holds full rows, columns exactly the published fields in order;
    ``deletes`` holds the primary-key columns only. Either may have no rows.
    """

    upserts: pd.DataFrame
    deletes: pd.DataFrame

    def __len__(self) -> int:
        return len(self.upserts) + len(self.deletes)


def check_changes(
    table: str, changes: RowChanges, fields: list[FieldSpec], primary_key: list[str]
) -> None:
    """Refuse a change set the portal could not apply by key (names columns, never values)."""
    if not primary_key:
        raise PortalError(f"{table}: apply_changes needs a primary key to match rows by")
    names = [f.name for f in fields]
    unknown = [k for k in primary_key if k not in names]
    if unknown:
        raise PortalError(f"{table}: primary key names {', '.join(unknown)}, not published fields")
    if list(changes.upserts.columns) != names:
        raise PortalError(
            f"{table}: upsert columns must be exactly the published fields in order "
            f"({', '.join(names)})"
        )
    if list(changes.deletes.columns) != primary_key:
        raise PortalError(
            f"{table}: delete columns must be exactly the primary key ({', '.join(primary_key)})"
        )
    for side, frame in (("upsert", changes.upserts), ("delete", changes.deletes)):
        keys = frame[primary_key]
        if keys.isna().any().any():
            raise PortalError(f"{table}: a {side} row has no value in a primary-key column")
        if keys.duplicated().any():
            raise PortalError(f"{table}: {int(keys.duplicated().sum())} {side} rows repeat a key")


def nothing_to_apply(
    live: PublishedVersion, changes: RowChanges, version: str, metadata: TableMetadata
) -> bool:
    """True when :meth:`Portal.apply_changes` must write nothing: the target version is
    live, or there are no row changes and the live version already has this metadata."""
    if live.version == published_version(version, metadata):
        return True
    same_metadata = (
        live.data_version is not None
        and published_version(live.data_version, metadata) == live.version
    )
    return len(changes) == 0 and same_metadata


class Portal(Protocol):
    kind: ClassVar[str]

    def current_version(self, table: str) -> PublishedVersion | None:
        """The live version of ``table``, or None when it was never published."""
        ...

    def publish(
        self,
        table: str,
        frame: pd.DataFrame,
        *,
        fields: list[FieldSpec],
        primary_key: list[str],
        version: str,
        run_id: str,
        metadata: TableMetadata,
        base: PublishedVersion | None | EllipsisType = ...,
    ) -> PublishResult:
        """Replace ``table`` with ``frame`` and ``metadata`` as one new version, atomically.

        ``frame``'s columns are exactly ``fields`` (published names, published order);
        ``version`` is the content hash of ``frame``. The published version covers the
        rows and the metadata (:func:`published_version`): if it is already live nothing
        is written; if only the metadata differs, a new version carries the live rows
        with the new metadata. ``base`` is the live version the run started from (read
        now when not given): if another run published since, PortalConflict names it
        and nothing changes.
        """
        ...

    def apply_changes(
        self,
        table: str,
        changes: RowChanges,
        *,
        fields: list[FieldSpec],
        primary_key: list[str],
        version: str,
        run_id: str,
        metadata: TableMetadata,
        base: PublishedVersion | None | EllipsisType = ...,
    ) -> PublishResult:
        """Upsert ``changes.upserts`` and delete ``changes.deletes`` by ``primary_key`` as ONE
        new version of an existing table (readers see it before or after, never between).

        ``version`` is the content hash of the table after the changes (recorded as the
        live data version, as a publish records it). Metadata is handled as by
        :meth:`publish`. Nothing is written when the target version is already live, or
        when there are no changes and the metadata is the same. Deleting an absent key
        is not an error. ``base`` works as in :meth:`publish` (PortalConflict names the
        other run). A missing table, or an empty primary key, is a PortalError: publish
        in full first. The result's ``rows`` is the live row count after the changes;
        ``upserted`` and ``deleted`` count what changed.
        """
        ...

    def table_url(self, table: str) -> str:
        """Where a resident finds the table."""
        ...

    def plan(
        self,
        table: str,
        frame: pd.DataFrame,
        *,
        fields: list[FieldSpec],
        primary_key: list[str],
        version: str,
        metadata: TableMetadata,
    ) -> PublishPlan:
        """What :meth:`publish` with these arguments would change, by reading only.

        Rows to add, update and delete by primary key (compared by row hash with the
        live rows read through the portal), or rows before/after and whether the
        content differs without a key; the schema and metadata diff. Writes nothing.
        """
        ...


PortalFactory = Callable[[Settings], Portal]
_REGISTRY: dict[str, PortalFactory] = {}
#: the built-in kinds, imported on first use (each module registers itself): a command
#: that publishes to Datasette never imports the Socrata clients
_BUILTIN = {kind: f"civicflow.portals.{kind}" for kind in ("datasette", "socrata")}


class StagedRows(Protocol):
    """A new version's rows sent batch by batch to a staging table no reader sees, then
    made live in one swap (or dropped): a streaming run uploads while it still checks."""

    @property
    def rows(self) -> int:
        """Rows staged so far."""
        ...

    @property
    def complete(self) -> bool:
        """False when a batch could not join the ones before (its datetimes carry a
        finer unit than theirs): the staged rows are incomplete and must be re-staged."""
        ...

    def load(self, batch: pd.DataFrame) -> None:
        """Stage ``batch`` (columns exactly the fields, in order) after the rows before."""
        ...

    def swap(self, *, version: str, metadata: TableMetadata) -> PublishResult:
        """Make the staged rows the live table, as :meth:`Portal.publish` of them would
        (``version``: their content hash); the staging table is dropped either way."""
        ...

    def discard(self) -> None:
        """Drop the staged rows; the live table is untouched (best effort: a staging
        table left behind is reclaimed when its lease expires)."""
        ...


@runtime_checkable
class StagingPortal(Portal, Protocol):
    """A portal that can stage a new version's rows in batches before making it live."""

    def stage(
        self,
        table: str,
        *,
        fields: list[FieldSpec],
        primary_key: list[str],
        run_id: str,
        base: PublishedVersion | None,
        date_unit: str | None = None,
    ) -> StagedRows:
        """Start staging a new version of ``table`` from ``base`` (the live version the
        run started from; PortalConflict now if it is no longer live). ``date_unit``
        (``s`` or ``ms``) fixes how datetimes are written; None: the first batch's."""
        ...


def register_portal(kind: str) -> Callable[[PortalFactory], PortalFactory]:
    def decorate(factory: PortalFactory) -> PortalFactory:
        _REGISTRY[kind] = factory
        return factory

    return decorate


def get_portal(kind: str, settings: Settings) -> Portal:
    if kind not in _REGISTRY and kind in _BUILTIN:
        importlib.import_module(_BUILTIN[kind])
    try:
        factory = _REGISTRY[kind]
    except KeyError:
        raise PortalError(
            f"no portal kind {kind!r} (registered: {', '.join(registered_portals())})"
        ) from None
    return factory(settings)


def registered_portals() -> list[str]:
    return sorted(set(_REGISTRY) | set(_BUILTIN))
