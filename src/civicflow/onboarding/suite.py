"""Draft a GX expectation suite from the profile: observed facts as warning-level checks.

What the data showed once is no rule yet, so ranges, fill rates and the values of
medium-cardinality text are warnings (reported, never blocking); only the primary key's
presence is critical, as the spec already makes it. Same JSON shape as the suites in
``expectations/``.
"""

from __future__ import annotations

import math
from typing import Any

from civicflow.onboarding.profile import ColumnProfile, TableProfile

#: fewest non-empty rows per distinct value before the values count as the full set
ROWS_PER_VALUE = 10


def _expectation(kind: str, kwargs: dict[str, Any], severity: str, why: str) -> dict[str, Any]:
    return {"type": kind, "kwargs": kwargs, "meta": {"severity": severity, "why": why}}


def _bounds(col: ColumnProfile) -> tuple[float | int, float | int]:
    lo, hi = float(col.minimum or 0), float(col.maximum or 0)
    if col.type == "integer":
        return int(lo), int(hi)
    # Rounded outwards so a value printed with fewer digits still falls inside.
    scale = 10 ** min(col.decimals, 4)
    return math.floor(lo * scale) / scale, math.ceil(hi * scale) / scale


def _range(col: ColumnProfile) -> dict[str, Any] | None:
    if col.type not in ("integer", "number") or col.minimum is None:
        return None
    lo, hi = _bounds(col)
    return _expectation(
        "expect_column_values_to_be_between",
        {"column": col.name, "min_value": lo, "max_value": hi},
        "warning",
        f"Observed range when the spec was drafted ({lo} to {hi}); a value outside is reported.",
    )


def _fill_rate(col: ColumnProfile) -> dict[str, Any] | None:
    share = col.present / col.rows if col.rows else 0.0
    if col.nulls == 0 or share < 0.5:
        return None
    floor = math.floor(share * 0.9 * 100) / 100
    return _expectation(
        "expect_column_proportion_of_non_null_values_to_be_between",
        {"column": col.name, "min_value": floor},
        "warning",
        f"{share:.0%} of rows had a value when the spec was drafted; a drop below "
        f"{floor:.0%} may mean a broken export.",
    )


def _in_set(col: ColumnProfile) -> dict[str, Any] | None:
    values = col.values
    if col.type != "string" or not values or col.present < ROWS_PER_VALUE * len(values):
        return None
    return _expectation(
        "expect_column_values_to_be_in_set",
        {"column": col.name, "value_set": values},
        "warning",
        f"The {len(values)} values seen when the spec was drafted; a new one is reported.",
    )


def draft_suite(
    dataset_id: str, profile: TableProfile, fields: list[dict[str, Any]], key: list[str]
) -> dict[str, Any]:
    """The suite for the drafted ``fields`` (dropped and hashed fields get no checks)."""
    expectations = [
        _expectation(
            "expect_column_values_to_not_be_null",
            {"column": name},
            "critical",
            "Part of the primary key: every row has one.",
        )
        for name in key
    ]
    for spec_field in fields:
        rule = (spec_field.get("privacy") or {}).get("rule")
        if rule in ("drop", "hash"):
            continue
        col = profile.column(spec_field["name"])
        typed = col if spec_field["type"] == col.type else None
        enumerated = "enum" in (spec_field.get("constraints") or {})
        checks = [_fill_rate(col)]
        if typed is not None:
            checks += [_range(typed), None if enumerated else _in_set(typed)]
        expectations += [c for c in checks if c is not None]
    return {
        "name": dataset_id,
        "meta": {
            "description": f"Drafted by civicflow spec init from the data of {dataset_id}: "
            "observed ranges, fill rates and values as warnings. critical blocks publishing; "
            "warning is reported."
        },
        "expectations": expectations,
    }
