"""The Portal protocol: one adapter per portal kind, registered by name.

Flows never branch on the portal kind; they ask the registry for the adapter named
in the dataset spec and call the protocol. Each adapter declares its capabilities
so callers can check what it supports instead of testing its type.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import pandas as pd

from civicflow.settings import Settings
from civicflow.spec.models import FieldSpec

#: publishing replaces the whole table in one step readers cannot observe half-done
ATOMIC_REPLACE = "atomic_replace"
#: dataset and column descriptions are stored on the portal
METADATA = "metadata"
#: the portal answers read queries (used by tests and the scorecard's links)
QUERY = "query"


class PortalError(Exception):
    """The portal refused or failed a request. Messages never include tokens."""


@dataclass(frozen=True)
class PublishedVersion:
    """What a portal says is live for a table."""

    table: str
    version: str  # sha256 of the published content
    rows: int
    run_id: str | None = None
    published_at: str | None = None


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


@dataclass(frozen=True)
class PublishResult:
    table: str
    version: str
    rows: int
    changed: bool  # False: the portal already held exactly this version
    url: str | None = None


class Portal(Protocol):
    kind: ClassVar[str]
    capabilities: ClassVar[frozenset[str]]

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
    ) -> PublishResult:
        """Replace ``table`` with ``frame`` as one new version, atomically for readers.

        ``frame``'s columns are exactly ``fields`` (published names, published order).
        If the live version already equals ``version`` nothing is written.
        """
        ...

    def table_url(self, table: str) -> str:
        """Where a resident finds the table."""
        ...


PortalFactory = Callable[[Settings], Portal]
_REGISTRY: dict[str, PortalFactory] = {}


def register_portal(kind: str) -> Callable[[PortalFactory], PortalFactory]:
    def decorate(factory: PortalFactory) -> PortalFactory:
        _REGISTRY[kind] = factory
        return factory

    return decorate


def get_portal(kind: str, settings: Settings) -> Portal:
    try:
        factory = _REGISTRY[kind]
    except KeyError:
        raise PortalError(
            f"no portal kind {kind!r} (registered: {', '.join(sorted(_REGISTRY))})"
        ) from None
    return factory(settings)


def registered_portals() -> list[str]:
    return sorted(_REGISTRY)
