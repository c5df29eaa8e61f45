"""Portals: where published datasets go. ``get_portal`` imports an adapter on first use."""

from civicflow.portals.base import (
    Portal,
    PortalConflict,
    PortalError,
    PortalFactory,
    PublishedVersion,
    PublishResult,
    RowChanges,
    StagedRows,
    StagingPortal,
    TableMetadata,
    get_portal,
    metadata_version,
    published_version,
    register_portal,
    registered_portals,
)
from civicflow.portals.plan import PublishPlan

__all__ = [
    "Portal",
    "PortalConflict",
    "PortalError",
    "PortalFactory",
    "PublishResult",
    "PublishPlan",
    "PublishedVersion",
    "RowChanges",
    "StagedRows",
    "StagingPortal",
    "TableMetadata",
    "get_portal",
    "metadata_version",
    "published_version",
    "register_portal",
    "registered_portals",
]
