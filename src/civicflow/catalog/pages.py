"""pages (being built)."""

from __future__ import annotations

from typing import Any

ROUTES: list[tuple[str, Any]] = []
