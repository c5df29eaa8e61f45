"""What one scan check found in one column, before it becomes a report Finding."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Hits:
    """Rows where one detector fired in one column, with masked examples."""

    detector: str
    mask: np.ndarray
    examples: list[str]
