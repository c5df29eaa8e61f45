"""What a profile says about a table and each of its columns (plain data, no logic)."""

from __future__ import annotations

from dataclasses import dataclass, field

#: distinct values kept for enumerations and in-set checks
MAX_LISTED = 30


@dataclass
class ColumnProfile:
    """What one source column holds."""

    source: str
    name: str
    type: str
    rows: int
    nulls: int
    distinct: int
    formats: list[str] = field(default_factory=list)
    decimals: int = 0
    minimum: float | str | None = None
    maximum: float | str | None = None
    mean_length: float = 0.0
    #: distinct values, most frequent first, when there are at most MAX_LISTED
    values: list[str] | None = None
    #: raw texts that look like "no value" rather than a measurement (e.g. 99999)
    sentinels: list[str] = field(default_factory=list)
    sentinel_rows: int = 0

    @property
    def present(self) -> int:
        return self.rows - self.nulls

    @property
    def unique(self) -> bool:
        return self.nulls == 0 and self.distinct == self.rows


@dataclass
class TableProfile:
    rows: int
    columns: list[ColumnProfile]
    #: primary-key candidates, best first (each a list of field names)
    keys: list[list[str]] = field(default_factory=list)

    def column(self, name: str) -> ColumnProfile:
        return next(c for c in self.columns if c.name == name)
