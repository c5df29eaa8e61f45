"""Write a drafted spec as ordered, commented YAML a steward can read top to bottom.

PyYAML cannot write comments, so the layout is ours: mappings in block style in the
order they were built, lists of scalars and small constraint mappings in flow style,
each scalar quoted by PyYAML itself (so the text parses back to the same data), a
trailing comment beside each marked value saying what to decide, and note lines above
any key.
"""

from __future__ import annotations

from typing import Any

import yaml

Path = tuple[str | int, ...]
#: mappings written on one line when nothing inside them carries a comment
_FLOW_KEYS = {"constraints", "steward"}


def scalar(value: Any) -> str:
    """One value in YAML flow syntax, quoted as PyYAML sees fit."""
    text = yaml.safe_dump(
        value, default_flow_style=True, width=1 << 20, allow_unicode=True, sort_keys=False
    )
    return text.removesuffix("\n").removesuffix("\n...").strip()


class _Writer:
    def __init__(self, comments: dict[Path, str], notes: dict[Path, list[str]]) -> None:
        self.comments, self.notes, self.lines = comments, notes, list[str]()

    def _flow(self, path: Path, value: Any) -> bool:
        if isinstance(value, list):
            return not any(isinstance(v, dict | list) for v in value)
        inner = [p for p in self.comments if p[: len(path)] == path and p != path]
        return bool(path) and path[-1] in _FLOW_KEYS and not inner

    def _note(self, path: Path, pad: str) -> None:
        self.lines.extend(f"{pad}# {line}" for line in self.notes.get(path, []))

    def _trail(self, path: Path) -> str:
        return f"  # {self.comments[path]}" if path in self.comments else ""

    def mapping(self, data: dict[str, Any], path: Path, indent: int, first: str = "") -> None:
        pad = " " * indent
        for i, (key, value) in enumerate(data.items()):
            here = (*path, key)
            lead = first if i == 0 and first else pad
            if not (i == 0 and first):
                self._note(here, pad)
            self.value(key, value, here, indent, lead)

    def value(self, key: str, value: Any, path: Path, indent: int, lead: str) -> None:
        pad = " " * indent
        if isinstance(value, dict) and value and not self._flow(path, value):
            self.lines.append(f"{lead}{key}:{self._trail(path)}")
            self.mapping(value, path, indent + 2)
        elif isinstance(value, list) and value and not self._flow(path, value):
            self.lines.append(f"{lead}{key}:{self._trail(path)}")
            for i, item in enumerate(value):
                self._note((*path, i), pad + "  ")
                self.mapping(item, (*path, i), indent + 4, first=pad + "  - ")
        else:
            self.lines.append(f"{lead}{key}: {scalar(value)}{self._trail(path)}")


def render(
    data: dict[str, Any],
    comments: dict[Path, str],
    notes: dict[Path, list[str]],
    header: list[str],
) -> str:
    """The YAML text of ``data`` with ``header`` comment lines on top."""
    writer = _Writer(comments, notes)
    writer.lines.extend(f"# {line}" if line else "#" for line in header)
    writer.mapping(data, (), 0)
    return "\n".join(writer.lines) + "\n"
