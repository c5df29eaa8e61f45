"""Catalog entries: one per live table, from the portal's own bookkeeping tables.

``_civicflow_metadata`` holds the metadata a publish sent (``pipeline.table_metadata``:
title, description, license, source = department, column descriptions, and ``extra``
with steward, update frequency, category, tags, provenance, the structured data
dictionary with each field's empty values, the privacy notes and the summaries of the
recent versions); ``_civicflow_versions`` holds one row per published version, joined
here with its summary (rows added, changed, deleted; checks passed) by the run that
published it and its rows' version. Both are public (Datasette serves them to anyone);
staging tables are not read.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass, field, replace
from typing import Any

from civicflow.portals.publish_store import METADATA, VERSIONS

#: SPDX licence ids -> their canonical URL (DCAT-US wants the licence as a URL)
LICENSES = {
    "CC0-1.0": "https://creativecommons.org/publicdomain/zero/1.0/",
    "CC-BY-4.0": "https://creativecommons.org/licenses/by/4.0/",
    "CC-BY-SA-4.0": "https://creativecommons.org/licenses/by-sa/4.0/",
    "ODbL-1.0": "https://opendatacommons.org/licenses/odbl/1-0/",
    "ODC-By-1.0": "https://opendatacommons.org/licenses/by/1-0/",
    "PDDL-1.0": "https://opendatacommons.org/licenses/pddl/1-0/",
    "OGL-UK-3.0": "https://www.nationalarchives.gov.uk/doc/open-government-licence/version/3/",
    "MIT": "https://opensource.org/licenses/MIT",
}


def license_url(license_id: str | None) -> str | None:
    """The licence as a URL: an SPDX id mapped, a URL kept, anything else None."""
    if not license_id:
        return None
    if re.match(r"^https?://", license_id):
        return license_id
    return LICENSES.get(license_id) or LICENSES.get(
        next((k for k in LICENSES if k.lower() == license_id.lower()), "")
    )


@dataclass(frozen=True)
class Changes:
    """What one version changed, as its publish recorded it (None: not counted; a table
    without a primary key has no ``changed``: a changed row is one deleted and one added)."""

    added: int | None
    changed: int | None
    deleted: int | None
    checks_passed: int | None
    checks_total: int | None

    @property
    def keyless(self) -> bool:
        return self.changed is None and self.added is not None

    @property
    def complete(self) -> bool:
        """Every count known (``changed`` may be absent only for a keyless table)."""
        counts = (self.added, self.deleted, self.checks_passed, self.checks_total)
        return None not in counts and (self.changed is not None or self.keyless)


@dataclass(frozen=True)
class Version:
    """One published version of a table (newest first in ``Entry.versions``).

    ``changes`` is None for a version with no summary in the live metadata: published
    before summaries were kept, by a rollback, or older than the history the live
    version carries.
    """

    version: str
    rows: int
    run_id: str | None
    published_at: str
    data_version: str | None
    changes: Changes | None = None


@dataclass(frozen=True)
class Entry:
    """What the catalog knows about one live dataset."""

    table: str
    title: str
    description: str
    license: str | None
    department: str | None
    columns: dict[str, str]
    extra: dict[str, Any]
    versions: list[Version] = field(default_factory=list)

    def get(self, key: str, default: Any = None) -> Any:
        """An ``extra`` value (steward, update_frequency, category, tags, ...)."""
        value = self.extra.get(key)
        return default if value is None else value

    @property
    def live(self) -> Version:
        return self.versions[0]

    @property
    def rows(self) -> int:
        return self.live.rows

    @property
    def last_updated(self) -> str:
        """When the live version was published (ISO 8601, UTC)."""
        return self.live.published_at

    @property
    def dictionary(self) -> list[dict[str, Any]]:
        """Published fields in the spec's order (name, type, unit, description, privacy);
        a table published before the dictionary existed falls back to its columns."""
        fields = self.extra.get("dictionary")
        if isinstance(fields, list) and fields:
            return fields
        return [
            {"name": n, "type": None, "unit": None, "description": d, "privacy": None}
            for n, d in self.columns.items()
        ]

    @property
    def empty_counts(self) -> dict[str, int] | None:
        """Empty values per field of the live rows, counted when they were published;
        None when some field has no count (published before they were counted)."""
        counts = {}
        for f in self.dictionary:
            value = _count(f.get("empty"))
            if value is None:
                return None
            counts[str(f.get("name"))] = value
        return counts


def _exists(conn: sqlite3.Connection, table: str) -> bool:
    found = conn.execute(
        "select 1 from sqlite_master where type = 'table' and name = ?", [table]
    ).fetchone()
    return found is not None


def _versions(conn: sqlite3.Connection) -> dict[str, list[Version]]:
    out: dict[str, list[Version]] = {}
    rows = conn.execute(
        f"select table_name, version, rows, run_id, published_at, data_version from {VERSIONS}"
        " order by id desc"
    )
    for table, version, count, run_id, published_at, data_version in rows:
        out.setdefault(table, []).append(
            Version(version, int(count), run_id, published_at, data_version)
        )
    return out


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _changes(entry: dict[str, Any]) -> Changes:
    keys = ("added", "changed", "deleted", "checks_passed", "checks_total")
    return Changes(*(_count(entry.get(k)) for k in keys))


def with_changes(versions: list[Version], history: Any) -> list[Version]:
    """``versions`` with the summaries of ``history`` (``extra.history``) joined on: the
    same publishing run and the same rows (``data_version``)."""
    found = {
        (h.get("run_id"), h.get("data_version")): _changes(h)
        for h in (history if isinstance(history, list) else [])
        if isinstance(h, dict) and h.get("run_id")
    }
    return [
        replace(v, changes=found.get((v.run_id, v.data_version)) if v.run_id else None)
        for v in versions
    ]


def _entry(table: str, metadata: dict[str, Any], versions: list[Version]) -> Entry:
    extra = metadata.get("extra") or {}
    versions = with_changes(versions, extra.get("history"))
    return Entry(
        table=table,
        title=str(metadata.get("title") or table),
        description=str(metadata.get("description") or ""),
        license=metadata.get("license"),
        department=extra.get("department") or metadata.get("source"),
        columns=dict(metadata.get("columns") or {}),
        extra=dict(extra),
        versions=versions,
    )


def read_entries(conn: sqlite3.Connection) -> list[Entry]:
    """Every table with a published version and its metadata, by title."""
    if not (_exists(conn, VERSIONS) and _exists(conn, METADATA)):
        return []
    versions = _versions(conn)
    entries = []
    for table, text in conn.execute(f"select table_name, metadata from {METADATA}"):
        if table in versions and _exists(conn, table):
            entries.append(_entry(table, json.loads(text), versions[table]))
    return sorted(entries, key=lambda e: e.title.lower())


def read_entry(conn: sqlite3.Connection, table: str) -> Entry | None:
    """One table's entry, or None when it has no published version."""
    return next((e for e in read_entries(conn) if e.table == table), None)
