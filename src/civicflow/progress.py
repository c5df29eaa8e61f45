"""Progress of long row work (rows done, rate) for people watching a terminal.

Every few seconds a line on the logger; at the end one summary line. In CI
(``CI=true``) only the summary, so logs stay short.
"""

from __future__ import annotations

import logging
import os
import time

EVERY_S = 5.0


class RowProgress:
    """``step(done)`` as rows get done, ``finish(done)`` once: ``<label>: <verb> N rows``."""

    def __init__(
        self, log: logging.Logger, label: str, verb: str, total: int | None = None
    ) -> None:
        self.log, self.label, self.verb, self.total = log, label, verb, total
        self.started = self.last = time.monotonic()
        self.show = os.environ.get("CI", "").lower() not in ("1", "true")

    def step(self, done: int) -> None:
        now = time.monotonic()
        if self.show and now - self.last >= EVERY_S:
            self.last = now
            of = f"/{self.total:,}" if self.total is not None else ""
            rate = done / max(now - self.started, 1e-9)
            self.log.info(
                "%s: %s %s%s rows (%s rows/s)",
                self.label,
                self.verb,
                f"{done:,}",
                of,
                f"{rate:,.0f}",
            )

    def finish(self, done: int) -> float:
        """Log the summary; the seconds since the start."""
        elapsed = time.monotonic() - self.started
        self.log.info(
            "%s: %s %s rows in %.1f s (%s rows/s)",
            self.label,
            self.verb,
            f"{done:,}",
            elapsed,
            f"{done / max(elapsed, 1e-9):,.0f}",
        )
        return elapsed
