"""Datasette hooks of the catalog: its routes (pages, downloads, DCAT).

Registered as its own Datasette plugin (entry point ``civicflow_catalog``), read-only:
it never writes the portal. Each module keeps its routes in ``ROUTES``.
"""

from __future__ import annotations

from typing import Any

from datasette import hookimpl

from civicflow.catalog import dcat, downloads, pages


@hookimpl
def register_routes() -> list[tuple[str, Any]]:
    return [*pages.ROUTES, *downloads.ROUTES, *dcat.ROUTES]
