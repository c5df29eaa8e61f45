"""Portals: where published datasets go. Importing this registers every adapter."""

from civicflow.portals import datasette as _datasette  # noqa: F401  (registers "datasette")
from civicflow.portals import socrata as _socrata  # noqa: F401  (registers "socrata")
from civicflow.portals.base import (
    Portal,
    PortalConflict,
    PortalError,
    PortalFactory,
    PublishedVersion,
    PublishResult,
    RowChanges,
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
    "TableMetadata",
    "get_portal",
    "metadata_version",
    "published_version",
    "register_portal",
    "registered_portals",
]
