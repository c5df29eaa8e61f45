"""The privacy rules, one plain function each, registered by name.

A rule takes one column (a pandas Series indexed by data row number) and returns the
column as it may be published. Nulls stay null under every rule. ``drop`` returns the
column unchanged: dropping is done by leaving the field out of the published frame.
"""

from __future__ import annotations

from collections.abc import Callable
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


def redact_detectors(names: list[str] | None) -> list[Detector]:
    if names is None:
        return [d for d in DETECTORS.values() if d.redacts]
    unknown = [n for n in names if n not in DETECTORS]
    if unknown:
        raise PrivacyError(f"unknown detector(s) {', '.join(unknown)} (registered: {', '.join(sorted(DETECTORS))})")
    return [DETECTORS[n] for n in names]


_STRING = np.dtypes.StringDType()
_NEVER = "\x00\x00"  # stands in for an empty value: replacing it changes nothing


def redact_known_values(text: pa.Array, others: pd.DataFrame) -> pa.Array:
    """Replace, row by row but vectorised, each other column's value wherever it appears in the text.

    The whole value goes first, then each of its words of 3+ letters (``Maria Lopez`` also
    removes a later ``Ms. Lopez``). Case-sensitive: names are written capitalised.
    """
    result = np.array(text.to_numpy(zero_copy_only=False), dtype=object)
    is_null = pd.isna(result)
    out = np.where(is_null, "", result).astype(_STRING)
    for name in others.columns:
        column = others[name].astype("str")
        # Capitalised words only: names split well, e-mails and phone numbers do not.
        words = column.str.findall(r"[A-Z][A-Za-z'-]{2,}")
        width = int(words.str.len().max()) if words.notna().any() else 0
        pieces = [column] + [words.str[i] for i in range(width)]
        placeholder = f"[{str(name).upper()}]"
        for piece in pieces:
            olds = piece.where(piece.notna() & (piece.str.len() >= 3), _NEVER).to_numpy(dtype=object).astype(_STRING)
            out = np.strings.replace(out, olds, placeholder)
    return pa.array(np.where(is_null, None, out.astype(object)), type=pa.string())


def redact_text(values: pd.Series, detectors: list[Detector], others: pd.DataFrame | None = None) -> pd.Series:
    """Free text with known values and every detector's findings replaced by placeholders."""
    arr = as_text(values)
    if others is not None and len(others.columns):
        arr = redact_known_values(arr, others)
    for detector in detectors:
        arr = detector.redact(arr)
    return pd.Series(arr.to_numpy(zero_copy_only=False), index=values.index, name=values.name, dtype="str")


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
