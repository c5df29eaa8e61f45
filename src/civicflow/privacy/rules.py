"""The privacy rules, one plain function each, registered by name.

A rule takes one column (a pandas Series indexed by data row number) and returns the
column as it may be published. Nulls stay null under every rule. ``drop`` returns the
column unchanged: dropping is done by leaving the field out of the published frame.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from civicflow.privacy.detectors import DETECTORS, Detector, as_text
from civicflow.privacy.errors import PrivacyError
from civicflow.privacy.generalise import generalise
from civicflow.privacy.keys import HashKey
from civicflow.spec.models import FieldSpec


@dataclass(frozen=True)
class RuleContext:
    """What a rule may need beyond its own column."""

    frame: pd.DataFrame  # the whole validated frame (redact_values_of reads other columns)
    hash_key: HashKey | None = None


Rule = Callable[[pd.Series, FieldSpec, RuleContext], pd.Series]
RULES: dict[str, Rule] = {}


def register_rule(name: str) -> Callable[[Rule], Rule]:
    def decorate(fn: Rule) -> Rule:
        RULES[name] = fn
        return fn

    return decorate


# -- hash ---------------------------------------------------------------------------


def hash_values(values: pd.Series, key: HashKey) -> pd.Series:
    """HMAC-SHA256 hex of each value's text; one HMAC per distinct value, nulls stay null."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    digests = np.array([key.hexdigest(_canonical(u)) for u in uniques] + [None], dtype=object)
    # code -1 (null) indexes the trailing None
    return pd.Series(digests[codes], index=values.index, name=values.name, dtype="str")


def _canonical(value: object) -> str:
    """The text a value is hashed as: stable across runs and across int/str spellings."""
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@register_rule("hash")
def hash_rule(values: pd.Series, field: FieldSpec, ctx: RuleContext) -> pd.Series:
    if ctx.hash_key is None:
        raise PrivacyError(f"field {field.name}: the hash rule needs a key (see check_ready)")
    return hash_values(values, ctx.hash_key)


# -- drop / generalise ------------------------------------------------------------


@register_rule("drop")
def drop_rule(values: pd.Series, field: FieldSpec, ctx: RuleContext) -> pd.Series:
    return values


@register_rule("generalise")
def generalise_rule(values: pd.Series, field: FieldSpec, ctx: RuleContext) -> pd.Series:
    assert field.privacy is not None
    return generalise(values, field, field.privacy)


# -- redact ---------------------------------------------------------------------------


def redact_detectors(names: Sequence[str] | None) -> list[Detector]:
    if names is None:
        return [d for d in DETECTORS.values() if d.redacts]
    unknown = [n for n in names if n not in DETECTORS]
    if unknown:
        raise PrivacyError(
            f"unknown detector(s) {', '.join(unknown)} (registered: {', '.join(sorted(DETECTORS))})"
        )
    return [DETECTORS[n] for n in names]


# Capitalised words with some lower case (Lopez, McDonald, O'Brien): the parts of a name.
_NAME_WORD = r"\b[A-Z][A-Za-z'-]*[a-z][A-Za-z'-]*"


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def redact_known_values(text: pa.Array, others: pd.DataFrame) -> pa.Array:
    """Replace each other column's value, in the same row, wherever it appears in the text.

    The whole value goes first, then each of its name-like words of 3+ letters (``Maria
    Lopez`` also removes a later ``Ms. Lopez``); e-mails, phones and upper-case addresses
    only as a whole. Case-sensitive. Row-wise but columnar: one DuckDB query with nested
    ``replace(text, value, placeholder)`` calls over whole columns.
    """
    import duckdb

    names = [str(c) for c in others.columns]
    columns = {"t": text}
    for i, name in enumerate(names):
        columns[f"c{i}"] = as_text(others[name])
    con = duckdb.connect()
    try:
        con.register("src", pa.table(columns))
        words = ", ".join(
            f"list_filter(regexp_extract_all(c{i}, {_sql_text(_NAME_WORD)}), lambda w: length(w) >= 3) AS w{i}"
            for i in range(len(names))
        )
        widths = con.sql(
            f"SELECT {', '.join(f'max(len(w{i}))' for i in range(len(names)))} FROM (SELECT {words} FROM src)"
        ).fetchall()[0]
        expr = "t"
        for i, name in enumerate(names):
            placeholder = _sql_text(f"[{name.upper()}]")
            pieces = [f"c{i}"] + [f"w{i}[{k}]" for k in range(1, int((widths or [0])[i] or 0) + 1)]
            for piece in pieces:
                # Short or missing values become a string no text holds (NUL NUL): nothing to replace.
                expr = f"replace({expr}, CASE WHEN length(coalesce({piece}, '')) >= 3 THEN {piece} ELSE chr(0) || chr(0) END, {placeholder})"
        result = con.sql(
            f"SELECT {expr} AS t FROM (SELECT t, {', '.join(f'c{i}' for i in range(len(names)))}, {words} FROM src)"
        ).to_arrow_table()
    finally:
        con.close()
    return result.column("t").combine_chunks().cast(pa.string())


def redact_text(
    values: pd.Series, detectors: list[Detector], others: pd.DataFrame | None = None
) -> pd.Series:
    """Free text with known values and every detector's findings replaced by placeholders."""
    arr = as_text(values)
    if others is not None and len(others.columns):
        arr = redact_known_values(arr, others)
    for detector in detectors:
        arr = detector.redact(arr)
    return pd.Series(
        arr.to_numpy(zero_copy_only=False), index=values.index, name=values.name, dtype="str"
    )


@register_rule("redact")
def redact_rule(values: pd.Series, field: FieldSpec, ctx: RuleContext) -> pd.Series:
    assert field.privacy is not None
    refs = field.privacy.redact_values_of
    others = ctx.frame[refs] if refs else None
    return redact_text(values, redact_detectors(field.privacy.detectors), others)


# -- suppress small counts (dataset level) --------------------------------------------


def suppress_small_counts(values: pd.Series, threshold: int) -> pd.Series:
    """Counts from 1 to ``threshold - 1`` become null ("suppressed"); zero is kept.

    Zero discloses no one, and suppressing it would make every empty cell look small
    (the usual public-health convention, e.g. CMS cell suppression for 1-10).
    """
    numbers = pd.to_numeric(values)
    small = numbers.notna() & (numbers > 0) & (numbers < threshold)
    return values.mask(small)
