"""Marked items: suggestions in a drafted spec that a person must still decide.

``civicflow spec init`` writes every value it cannot know (a title, a privacy reason, the
primary key it guessed) as a string starting with ``CONFIRM:`` followed by its
suggestion. A steward keeps a suggestion by deleting the mark (and, for a list or a
choice such as ``'CONFIRM: [sr_number]'``, the quotes) or writes their own value. Every
loader path refuses a file while a mark is left, so a draft cannot be published
unreviewed; ``grep -n CONFIRM: datasets/*.yaml`` lists what is left.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from civicflow.spec.errors import SpecProblem

MARK = "CONFIRM:"


@dataclass(frozen=True)
class Mark:
    """One marked value: where it is in the document and what it suggests."""

    path: tuple[str | int, ...]
    value: str

    @property
    def key(self) -> str:
        """Dotted key path, as every other spec error names keys (``fields.3.privacy.reason``)."""
        return ".".join(str(p) for p in self.path)

    @property
    def suggestion(self) -> str:
        return self.value[len(MARK) :].strip()


def is_marked(value: Any) -> bool:
    return isinstance(value, str) and value.lstrip().startswith(MARK)


def marked(suggestion: str) -> str:
    """A value marked for review, carrying its suggestion."""
    return f"{MARK} {suggestion}"


def find_marks(data: Any, path: tuple[str | int, ...] = ()) -> list[Mark]:
    """Every marked string in a parsed YAML document, in document order."""
    if is_marked(data):
        return [Mark(path, data.strip())]
    if isinstance(data, dict):
        return [m for key, value in data.items() for m in find_marks(value, (*path, str(key)))]
    if isinstance(data, list):
        return [m for i, value in enumerate(data) for m in find_marks(value, (*path, i))]
    return []


def mark_problems(
    data: Any, file: Path, lines: dict[tuple[Any, ...], int] | None = None
) -> list[SpecProblem]:
    """One problem per mark left in ``data``, naming the file, line and key.

    The message does not repeat the suggestion: it may hold values from the source data
    (enumerations), and the line number already points at it.
    """
    lines = lines or {}
    return [
        SpecProblem(
            file,
            mark.key,
            f"still marked {MARK} decide this value (keep the suggestion by deleting the "
            f"mark, or write your own) and remove the mark",
            lines.get(mark.path),
        )
        for mark in find_marks(data)
    ]
