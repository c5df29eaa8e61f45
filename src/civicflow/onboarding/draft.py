"""Turn a profiled source into a dataset spec and a GX suite, marking what a person decides.

What the data shows (names, types, timestamp formats, nullability, ranges) is written as
is; what it can only suggest (title, owner, licence, primary key, closed value lists,
privacy reasons, sentinel values) is written as ``CONFIRM: <suggestion>`` with a comment
beside it saying what to decide. ``civicflow check`` refuses the spec until none is left.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from civicflow.onboarding.pii import Suggestion, suggest
from civicflow.onboarding.profile import ColumnProfile, TableProfile, profile_table
from civicflow.onboarding.read import SourceTable
from civicflow.onboarding.render import Path, render
from civicflow.onboarding.suite import ROWS_PER_VALUE, draft_suite
from civicflow.spec.marks import Mark, find_marks, marked

log = logging.getLogger("civicflow.onboarding")

#: at most this many values make a closed list (constraints.enum); more go to the suite
ENUM_LIMIT = 10
_RECORD_DATE = re.compile(r"(creat|open|issue|report|receiv|start|occur|incident)")
_TABULAR = ("csv", "excel", "postgres", "http")


@dataclass
class Draft:
    """A drafted spec (data, comments beside marks, notes above keys) and its suite."""

    dataset_id: str
    spec: dict[str, Any]
    suite: dict[str, Any]
    comments: dict[Path, str] = field(default_factory=dict)
    notes: dict[Path, list[str]] = field(default_factory=dict)
    header: list[str] = field(default_factory=list)

    @property
    def marks(self) -> list[Mark]:
        return find_marks(self.spec)

    def mark(self, path: Path, suggestion: Any, decide: str) -> str:
        """A marked value at ``path``: text as is, anything else in YAML flow syntax."""
        self.comments[path] = f"decide: {decide}"
        # Lists in JSON (which is YAML): double quotes read better inside the quoted mark.
        return marked(suggestion if isinstance(suggestion, str) else json.dumps(suggestion))

    def note(self, path: Path, line: str) -> None:
        self.notes.setdefault(path, []).append(line)

    def yaml(self) -> str:
        return render(self.spec, self.comments, self.notes, self.header)


def _describe(col: ColumnProfile, kind: str) -> str:
    """A data-dictionary line from the header and what the values showed."""
    shown = {
        "integer": "whole numbers",
        "number": "numbers",
        "date": "dates",
        "datetime": "date and time",
        "boolean": "true or false",
        "geopoint": "(latitude, longitude) points",
    }.get(kind, "text")
    if kind in ("integer", "number", "date", "datetime") and col.minimum is not None:
        lo, hi = (str(v).removesuffix(" 00:00:00") for v in (col.minimum, col.maximum))
        shown += f", {lo.removesuffix('.0')} to {hi.removesuffix('.0')} when drafted"
    return f"{col.source} ({shown})."


def _enum(col: ColumnProfile) -> list[str] | None:
    values = col.values
    if col.type != "string" or not values or not 2 <= len(values) <= ENUM_LIMIT:
        return None
    if col.present < ROWS_PER_VALUE * len(values) or max(len(v) for v in values) > 40:
        return None
    return values


class _Builder:
    def __init__(self, draft: Draft, profile: TableProfile, table: pa.Table, kind: str) -> None:
        self.draft, self.profile, self.table, self.kind = draft, profile, table, kind
        self.suggestions: dict[str, Suggestion | None] = {}

    def field(self, i: int, col: ColumnProfile) -> dict[str, Any]:
        s = self.suggestions[col.name]
        kind = (s.type if s and s.type else None) or col.type
        spec_field: dict[str, Any] = {"name": col.name}
        if col.source != col.name:
            spec_field["source"] = col.source
        spec_field["type"] = kind
        spec_field["description"] = _describe(col, kind)
        # A sentinel read as empty (null_values) makes the column nullable.
        if col.nulls == 0 and col.rows and not col.sentinels:
            spec_field["nullable"] = False
        if col.formats and (self.kind not in _TABULAR or col.formats != self.formats()):
            spec_field["formats"] = col.formats
        if s and s.semantic:
            spec_field["semantic"] = s.semantic
        if s and s.precision is not None:
            spec_field["precision"] = s.precision
        values = _enum(col) if kind == col.type and not (s and s.rule) else None
        if values and len(values) > 2:
            path: Path = ("fields", i, "constraints", "enum")
            decide = (
                f"are these {len(values)} values all the allowed ones? (a new one rejects a run)"
            )
            spec_field["constraints"] = {"enum": self.draft.mark(path, values, decide)}
        elif values:
            spec_field["constraints"] = {"enum": values}
        if s and s.rule:
            spec_field["privacy"] = self.privacy(i, s)
        if s and s.note:
            self.draft.note(("fields", i), s.note)
        return spec_field

    def privacy(self, i: int, s: Suggestion) -> dict[str, Any]:
        rule = dict(s.rule or {})
        if rule["rule"] == "redact" and s.semantic == "free_text":
            repeated = self.repeated_columns()
            if repeated:
                rule["redact_values_of"] = repeated
        path: Path = ("fields", i, "privacy", "reason")
        rule["reason"] = self.draft.mark(path, s.reason, s.decide)
        return rule

    def repeated_columns(self) -> list[str]:
        """Dropped personal columns and addresses, whose values free text often repeats."""
        found = []
        for name, s in self.suggestions.items():
            personal = s and s.rule and (s.rule["rule"] == "drop" or s.semantic == "address")
            text = self.profile.column(name).type == "string"
            if personal and text and s is not None and s.semantic in ("address", None):
                found.append(name)
        return found

    def formats(self) -> list[str]:
        """Every timestamp format the source needs, most used first."""
        counts: dict[str, int] = {}
        for col in self.profile.columns:
            for fmt in col.formats:
                counts[fmt] = counts.get(fmt, 0) + col.present
        return sorted(counts, key=lambda f: -counts[f])

    def null_values(self) -> list[str] | None:
        """Sentinel texts to read as empty, unless another column uses them as values."""
        sentinels = sorted({s for c in self.profile.columns for s in c.sentinels})
        if not sentinels:
            return None
        holders = {c.source for c in self.profile.columns if c.sentinels}
        probe = pa.array(sentinels)
        for header in self.table.column_names:
            if header not in holders and pc.any(pc.is_in(self.table[header], probe)).as_py():
                return None
        return ["", *sentinels]


def _record_date(fields: list[dict[str, Any]], profile: TableProfile) -> str | None:
    dates = [
        f["name"]
        for f in fields
        if f["type"] in ("date", "datetime") and not f.get("nullable", True) and "privacy" not in f
    ]
    named = [d for d in dates if _RECORD_DATE.search(d)]
    by_spread = sorted(dates, key=lambda d: -profile.column(d).distinct)
    return (named or by_spread or [None])[0]


def _frequency(profile: TableProfile, record_date: str | None) -> str:
    """daily when most days in the span have records, monthly for first-of-month dates."""
    if record_date is None:
        return "irregular"
    col = profile.column(record_date)
    lo, hi = (datetime.fromisoformat(str(v)) for v in (col.minimum, col.maximum))
    days = (hi - lo).days + 1
    if col.distinct >= days / 2:
        return "daily"
    if lo.day == 1 and hi.day == 1 and col.distinct <= days / 20:
        return "monthly"
    return "irregular"


def _metadata(draft: Draft, source: SourceTable, profile: TableProfile) -> None:
    spec = draft.spec
    words = re.sub(r"[_\s]+", " ", source.title).split() or [draft.dataset_id]
    title = " ".join(w[:1].upper() + w[1:] for w in words)
    spec["title"] = draft.mark(("title",), title, "the title shown on the portal")
    about = (
        f"{profile.rows:,} rows drafted from {source.origin}; "
        "describe what one row is, who records it and why."
    )
    spec["description"] = draft.mark(
        ("description",), about, "what the data holds and how it is collected"
    )
    spec["department"] = draft.mark(
        ("department",), "Owning department", "the department that owns the data"
    )
    spec["steward"] = {
        "name": draft.mark(
            ("steward", "name"), "Data Steward", "who answers questions about the data"
        ),
        "email": draft.mark(
            ("steward", "email"),
            "data-steward@example.org",
            "the steward's contact e-mail, shown on the portal",
        ),
    }
    spec["license"] = draft.mark(
        ("license",), "CC0-1.0", "the SPDX licence the city publishes under"
    )


def draft_dataset(dataset_id: str, source: SourceTable) -> Draft:
    """Profile ``source`` and draft the spec and suite for ``dataset_id``."""
    profile = profile_table(source.table)
    draft = Draft(dataset_id, spec={"id": dataset_id}, suite={})
    builder = _Builder(draft, profile, source.table, str(source.source["kind"]))
    for col in profile.columns:
        builder.suggestions[col.name] = suggest(col, source.table[col.source])
    fields = [builder.field(i, col) for i, col in enumerate(profile.columns)]
    _metadata(draft, source, profile)
    _catalog(draft, source, profile, fields)
    draft.spec["source"] = _source(draft, builder, source)
    key = _primary_key(draft, profile, builder)
    draft.spec["expectation_suite"] = dataset_id
    draft.spec["fields"] = fields
    draft.suite = draft_suite(dataset_id, profile, fields, key)
    draft.header = _header(draft, source, profile)
    log.info("drafted %s: %d fields, %d marked items", dataset_id, len(fields), len(draft.marks))
    return draft


def _catalog(
    draft: Draft, source: SourceTable, profile: TableProfile, fields: list[dict[str, Any]]
) -> None:
    """Refresh frequency, record date, category, tags and provenance."""
    record_date = _record_date(fields, profile)
    draft.spec["update_frequency"] = draft.mark(
        ("update_frequency",),
        _frequency(profile, record_date),
        "how often the department refreshes it (daily, weekly, monthly, ...)",
    )
    if record_date:
        draft.spec["record_date"] = record_date
        draft.comments[("record_date",)] = (
            "when each record happened: timeliness reads its latest value"
        )
    draft.spec["category"] = draft.mark(
        ("category",), "General", "the portal category (e.g. Service Requests, Transportation)"
    )
    draft.spec["tags"] = []
    today = date.today().isoformat()
    draft.spec["provenance"] = (
        f"Drafted by civicflow spec init on {today} from {source.origin} ({profile.rows:,} rows)."
    )


def _source(draft: Draft, builder: _Builder, source: SourceTable) -> dict[str, Any]:
    spec_source = dict(source.source)
    if spec_source["kind"] in _TABULAR:
        formats = builder.formats()
        if formats:
            spec_source["timestamp_formats"] = formats
        nulls = builder.null_values()
        if nulls:
            holders = ", ".join(c.name for c in builder.profile.columns if c.sentinels)
            decide = (
                f"{', '.join(nulls[1:])} in {holders} look like 'no value': read them as empty?"
            )
            spec_source["null_values"] = draft.mark(("source", "null_values"), nulls, decide)
    for line in source.notes:
        draft.note(("source",), line)
    return spec_source


def _primary_key(draft: Draft, profile: TableProfile, builder: _Builder) -> list[str]:
    personal = {n for n, s in builder.suggestions.items() if s and s.rule}
    keys = [k for k in profile.keys if not personal & set(k)]
    if not keys:
        draft.spec["primary_key"] = []
        draft.comments[("primary_key",)] = "no column or combination is unique and never empty"
        return []
    others = "; also unique: " + ", ".join("+".join(k) for k in keys[1:4]) if len(keys) > 1 else ""
    decide = f"the field(s) that identify a row (unique and never empty when drafted{others})"
    draft.spec["primary_key"] = draft.mark(("primary_key",), keys[0], decide)
    return keys[0]


def _header(draft: Draft, source: SourceTable, profile: TableProfile) -> list[str]:
    count = len(draft.marks)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return [
        "yaml-language-server: $schema=./spec.schema.json",
        f"Drafted by `civicflow spec init` from {source.origin} ({profile.rows:,} rows) on {when}.",
        f"{count} values are marked CONFIRM (the comment beside each says what to decide).",
        "Keep a suggestion by deleting the mark (and the quotes around a list or a choice),",
        "or write your own value. `civicflow check` refuses this file while one is left.",
        "Field descriptions are drafted from the headers and values: rewrite them for the data",
        "dictionary. Ranges, fill rates and value lists seen in the data are warning checks",
        f"in expectations/{draft.dataset_id}.json.",
    ]
