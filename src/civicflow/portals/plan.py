"""A publish plan: what ``publish`` would change on a portal (``--dry-run``).

A plan names counts, columns and metadata keys only, never a row value: primary keys
can be personal (a permit number, a case id), and the plan is printed to terminals
and CI logs. How a plan is computed is in diff.py.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class RowChanges:
    """Rows before and after; added/updated/deleted by primary key (None without one)."""

    before: int
    after: int
    #: the rows' content hash differs (rows, order or types): a publish uploads them
    content_changed: bool
    added: int | None = None
    updated: int | None = None
    deleted: int | None = None


@dataclass(frozen=True)
class SchemaChanges:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    #: (column, portal type now, portal type after)
    retyped: list[tuple[str, str, str]] = field(default_factory=list)
    #: the common columns change order
    reordered: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.retyped or self.reordered)


@dataclass(frozen=True)
class PublishPlan:
    """What ``publish`` would change on ``table``; nothing has been written."""

    table: str
    exists: bool
    current_version: str | None
    target_version: str
    rows: RowChanges
    schema: SchemaChanges
    #: metadata entries that would change, e.g. ``title``, ``columns.status``, ``extra.tags``
    metadata: list[str]

    @property
    def changed(self) -> bool:
        return self.current_version != self.target_version

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "changed": self.changed}

    def lines(self) -> list[str]:
        """The plan for people: counts, column names and metadata keys, no row values."""
        if not self.changed:
            return [f"{self.table}: unchanged: the portal already holds this exact version"]
        head = "new table" if not self.exists else "would publish a new version"
        return [f"{self.table}: {head}", self._rows_line(), *self._schema_lines(), self._meta()]

    def _rows_line(self) -> str:
        r = self.rows
        counts = f"rows {r.before:,} -> {r.after:,}"
        if r.added is not None:
            counts += f": {r.added:,} to add, {r.updated:,} to update, {r.deleted:,} to delete"
        elif r.content_changed:
            counts += ": content differs (no primary key: rows are replaced as a whole)"
        if r.content_changed and not (r.added or r.updated or r.deleted) and r.added is not None:
            counts += " (same rows; order or types differ, so the rows are uploaded again)"
        if not r.content_changed:
            counts += ": same rows (nothing uploaded)"
        return f"  {counts}"

    def _schema_lines(self) -> list[str]:
        s = self.schema
        if not self.exists:
            return [f"  schema: {len(s.added)} columns: {', '.join(s.added)}"]
        if not s.changed:
            return ["  schema: unchanged"]
        out = []
        if s.added:
            out.append(f"  schema: columns added: {', '.join(s.added)}")
        if s.removed:
            out.append(f"  schema: columns removed: {', '.join(s.removed)}")
        if s.retyped:
            out.append(
                "  schema: columns retyped: "
                + ", ".join(f"{name} ({was} -> {now})" for name, was, now in s.retyped)
            )
        if s.reordered:
            out.append("  schema: column order changes")
        return out

    def _meta(self) -> str:
        if not self.exists:
            return f"  metadata: {len(self.metadata)} entries, all new"
        if not self.metadata:
            return "  metadata: unchanged"
        return f"  metadata: {len(self.metadata)} changed: {', '.join(self.metadata)}"
