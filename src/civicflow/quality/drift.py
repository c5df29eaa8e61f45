"""Schema drift: the source's columns and types against the spec, before validation.

A department renames a header, adds a column or changes a date format without telling
anyone. ``schema_drift`` compares the extract with the spec and says what changed:

- **new**: a source column the spec does not name;
- **missing**: a spec field whose source column is absent;
- **renamed-looking**: a missing and a new column whose names are close (difflib) or
  whose values fit the missing field's declaration (a hint on that pair, not a verdict);
- **retyped**: most non-empty values of a column no longer parse as its declared type
  (a few bad cells are bad rows, for validation; a majority means the format changed).

Verdict: missing or retyped always rejects; new rejects under ``on_schema_change: fail``
and is reported (and not published) under ``ignore_new``. ``reason()`` is public (the
ledger reason): spec names, counts and positions only, never a source value nor a new
column's header (a file without its header row would put data there); ``lines()`` adds
the new headers for the private run report.
"""

from __future__ import annotations

import contextlib
import difflib
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from civicflow.quality.structure import type_error_mask
from civicflow.sources.cast import DEFAULT_TIMESTAMP_FORMATS, cast_column
from civicflow.spec.models import DatasetSpec, FieldSpec, TabularSource

Setting = Literal["fail", "ignore_new"]
#: above this share of non-empty values failing to parse, a column is retyped, not dirty
RETYPED_SHARE = 0.5
#: difflib ratio of normalised names above which a missing/new pair looks renamed
NAME_SIMILARITY = 0.75
#: share of a new column's sampled values that must fit a missing field to look like it
VALUES_FIT = 0.95
#: rows sampled for the values test (it runs once per missing x new pair)
SAMPLE_ROWS = 10_000
#: lines per kind in the public reason (a file without its header row drifts everywhere)
PUBLIC_LINES = 10


@dataclass(frozen=True)
class NewColumn:
    position: int  # 1-based position in the source
    label: str  # private: the source header (may be data if the header row is gone)


@dataclass(frozen=True)
class MissingColumn:
    field: str
    source: str


@dataclass(frozen=True)
class Renamed:
    field: str
    source: str
    position: int  # of the new column it looks renamed to
    label: str  # private
    why: str  # "similar name", "values fit", or both


@dataclass(frozen=True)
class Retyped:
    field: str
    source: str
    type: str
    failed: int
    present: int


@dataclass
class SchemaDrift:
    """What changed between the spec and one extract's columns."""

    dataset_id: str
    #: the spec's ``on_schema_change``, which the verdict and the texts follow
    setting: Setting = "fail"
    new: list[NewColumn] = field(default_factory=list)
    missing: list[MissingColumn] = field(default_factory=list)
    renamed: list[Renamed] = field(default_factory=list)
    retyped: list[Retyped] = field(default_factory=list)

    @property
    def drifted(self) -> bool:
        return bool(self.new or self.missing or self.retyped)

    def rejects(self, setting: Setting | None = None) -> bool:
        """Whether the run must stop under ``on_schema_change: setting`` (default: the spec's)."""
        setting = setting or self.setting
        return bool(self.missing or self.retyped or (self.new and setting == "fail"))

    def verdict(self, setting: Setting | None = None) -> Literal["none", "reported", "rejected"]:
        if self.rejects(setting):
            return "rejected"
        return "reported" if self.drifted else "none"

    def reason(self) -> str:
        """Public text: first line the verdict, then one line per change (no values)."""
        return "\n".join(self._lines(private=False))

    def lines(self) -> list[str]:
        """The same diff for the private run report, with the new columns' headers."""
        return self._lines(private=True)

    def to_dict(self) -> dict[str, Any]:
        """Private report section (holds the new headers)."""
        return {
            "setting": self.setting,
            "verdict": self.verdict(),
            **{
                k: [asdict(x) for x in getattr(self, k)]
                for k in ("new", "missing", "renamed", "retyped")
            },
        }

    def _lines(self, private: bool) -> list[str]:
        setting = self.setting
        verdict = self.verdict()
        if verdict == "none":
            return ["schema: no drift (every declared column present and parsing, nothing new)"]
        counts = ", ".join(
            f"{len(items)} {name}"
            for name, items in (
                ("missing", self.missing),
                ("retyped", self.retyped),
                ("new", self.new),
            )
            if items
        )
        head = "REJECTED: schema drift" if verdict == "rejected" else "schema drift reported"
        out = [f"{head} (on_schema_change: {setting}): {counts}"]
        hints = {r.field: r for r in self.renamed}
        missing = []
        for m in self.missing:
            line = f"  missing  {m.field} (source column {m.source!r}) is not in the source"
            if m.field in hints:
                r = hints[m.field]
                line += f"; looks renamed to {_new_name(r.position, r.label, private)} ({r.why})"
            missing.append(line)
        retyped = [
            f"  retyped  {t.field} (source column {t.source!r}): {t.failed:,} of "
            f"{t.present:,} non-empty values no longer parse as {t.type}"
            for t in self.retyped
        ]
        fate = "not published" if setting == "ignore_new" else "not in the spec"
        new = [f"  new      {_new_name(n.position, n.label, private)}: {fate}" for n in self.new]
        for lines in (missing, retyped, new):
            shown = lines if private else lines[:PUBLIC_LINES]
            out.extend(shown)
            if len(lines) > len(shown):
                out.append(f"           ... and {len(lines) - len(shown)} more")
        return out


def _new_name(position: int, label: str, private: bool) -> str:
    return (
        f"column {label!r} at position {position}"
        if private
        else f"the column at position {position}"
    )


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _name_ratio(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, _normalise(a), _normalise(b)).ratio()


def _values_fit(spec: DatasetSpec, f: FieldSpec, values: pa.ChunkedArray) -> bool:
    """Whether a sample of ``values`` parses as ``f``'s type and meets its enum/pattern.

    A plain string field accepts anything, so it gives no evidence either way.
    """
    sample = values.slice(0, SAMPLE_ROWS)
    present = pc.drop_null(sample)
    if len(present) == 0:
        return False
    checks: list[pa.ChunkedArray] = []
    if f.type != "string":
        formats = (
            spec.source.timestamp_formats
            if isinstance(spec.source, TabularSource)
            else DEFAULT_TIMESTAMP_FORMATS
        )
        typed = cast_column(present, f, formats)
        checks.append(pc.is_valid(typed))
    c = f.constraints
    if c is not None and c.enum is not None:
        checks.append(pc.is_in(present, value_set=pa.array([str(v) for v in c.enum])))
    if c is not None and c.pattern is not None:
        # a Python-only regex (RE2 refuses it) gives no evidence from values
        with contextlib.suppress(pa.ArrowInvalid):
            checks.append(pc.match_substring_regex(present, f"^(?:{c.pattern})$"))
    if not checks:
        return False
    return all(pc.mean(pc.cast(ok, pa.float64())).as_py() >= VALUES_FIT for ok in checks)


def _renamed(
    spec: DatasetSpec, raw: pa.Table, missing: list[MissingColumn], new: list[NewColumn]
) -> list[Renamed]:
    """Pair missing with new columns that look alike; each column in one pair at most."""
    candidates: list[tuple[tuple[int, float], MissingColumn, NewColumn, str]] = []
    for m in missing:
        f = spec.field(m.field)
        for n in new:
            ratio = _name_ratio(m.source, n.label)
            fits = _values_fit(spec, f, raw.column(n.position - 1))
            reasons = [
                w
                for w, ok in (("similar name", ratio >= NAME_SIMILARITY), ("values fit", fits))
                if ok
            ]
            if reasons:
                candidates.append(((len(reasons), ratio), m, n, " and ".join(reasons)))
    candidates.sort(key=lambda c: c[0], reverse=True)
    taken_fields: set[str] = set()
    taken_new: set[int] = set()
    out = []
    for _, m, n, why in candidates:
        if m.field not in taken_fields and n.position not in taken_new:
            taken_fields.add(m.field)
            taken_new.add(n.position)
            out.append(Renamed(m.field, m.source, n.position, n.label, why))
    return out


def type_failures(
    spec: DatasetSpec, raw: pa.Table, frame: pd.DataFrame
) -> dict[str, tuple[int, int]]:
    """Per declared non-string field whose column is present: (non-empty values that do
    not parse as its type, non-empty values). Counts add up over a table's batches."""
    out = {}
    for f in spec.fields:
        if f.type == "string" or f.source_name not in raw.column_names:
            continue
        present = raw.num_rows - raw[f.source_name].null_count
        out[f.name] = (int(type_error_mask(spec, raw, frame, f).sum()), present)
    return out


def schema_drift(
    spec: DatasetSpec,
    raw: pa.Table,
    frame: pd.DataFrame,
    failures: dict[str, tuple[int, int]] | None = None,
) -> SchemaDrift:
    """Compare the extract's columns (``raw``: source headers) and types (``frame``:
    typed, same rows) with ``spec``. Vectorised: one mask per declared column.

    ``failures``: the whole table's ``type_failures`` when ``raw`` is its first batch
    (the columns, and the sample a renamed column is told by, are the first rows')."""
    failures = type_failures(spec, raw, frame) if failures is None else failures
    labels = list(raw.column_names)
    declared = {f.source_name for f in spec.fields}
    drift = SchemaDrift(dataset_id=spec.id, setting=spec.on_schema_change)
    drift.new = [NewColumn(i + 1, label) for i, label in enumerate(labels) if label not in declared]
    present = set(labels)
    for f in spec.fields:
        if f.source_name not in present:
            drift.missing.append(MissingColumn(f.name, f.source_name))
        elif f.name in failures:
            failed, filled = failures[f.name]
            if filled and failed / filled > RETYPED_SHARE:
                drift.retyped.append(Retyped(f.name, f.source_name, str(f.type), failed, filled))
    if drift.missing and drift.new:
        drift.renamed = _renamed(spec, raw, drift.missing, drift.new)
    return drift
