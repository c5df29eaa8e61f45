"""Precision and recall of the text scan on a labelled set of civic-data texts.

The labelled set is a CSV with ``text`` and ``labels`` (space-separated detector names
that must fire; empty for lookalikes that nothing may flag). Each text is scanned as
one row of a free-text column, exactly as the privacy stage scans a published column,
so the numbers are those of the scan that blocks publishing.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from civicflow.privacy.scan import scan_column
from civicflow.spec.models import FieldSpec


@dataclass(frozen=True)
class Labelled:
    text: str
    labels: frozenset[str]


@dataclass(frozen=True)
class Score:
    detector: str
    true_pos: int
    false_pos: int
    false_neg: int

    @property
    def precision(self) -> float:
        found = self.true_pos + self.false_pos
        return self.true_pos / found if found else 1.0

    @property
    def recall(self) -> float:
        real = self.true_pos + self.false_neg
        return self.true_pos / real if real else 1.0


def load_labelled(path: Path) -> list[Labelled]:
    with Path(path).open(newline="", encoding="utf-8") as fh:
        return [
            Labelled(row["text"], frozenset(row["labels"].split())) for row in csv.DictReader(fh)
        ]


_FREE_TEXT = FieldSpec(
    name="text", type="string", description="labelled civic text", semantic="free_text"
)


def found_by_detector(texts: list[str]) -> dict[str, np.ndarray]:
    """Per detector, which texts the scan flags (detectors sharing a name are OR-ed)."""
    values = pd.Series(texts, dtype="str", index=pd.RangeIndex(1, len(texts) + 1))
    found: dict[str, np.ndarray] = {}
    for hit in scan_column(values, _FREE_TEXT):
        found[hit.detector] = found.get(hit.detector, np.zeros(len(texts), bool)) | hit.mask
    return found


def score(labelled: list[Labelled]) -> dict[str, Score]:
    """A Score per detector named in the labels or firing on the set."""
    found = found_by_detector([x.text for x in labelled])
    names = sorted(set(found) | {n for x in labelled for n in x.labels})
    scores = {}
    for name in names:
        fired = found.get(name, np.zeros(len(labelled), bool))
        truth = np.array([name in x.labels for x in labelled])
        scores[name] = Score(
            name,
            int((fired & truth).sum()),
            int((fired & ~truth).sum()),
            int((~fired & truth).sum()),
        )
    return scores


def mistakes(labelled: list[Labelled], name: str) -> tuple[list[str], list[str]]:
    """(false positives, misses) of one detector: the texts, for a test's message."""
    fired = found_by_detector([x.text for x in labelled]).get(name, np.zeros(len(labelled), bool))
    false_pos = [x.text for x, f in zip(labelled, fired, strict=True) if f and name not in x.labels]
    missed = [x.text for x, f in zip(labelled, fired, strict=True) if not f and name in x.labels]
    return false_pos, missed
