"""What a throttled HTTP answer asks for, shared by every client that talks to a portal.

Socrata (and most APIs) send ``Retry-After`` with a 429 or 503, as seconds or as an HTTP
date (RFC 9110 §10.2.3); the Socrata source and the Socrata portal both honour it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Protocol


class _HasHeaders(Protocol):
    @property
    def headers(self) -> Mapping[str, str]: ...


def retry_after(response: _HasHeaders) -> float | None:
    """Seconds ``Retry-After`` asks for (seconds or an HTTP date); None without one."""
    value = response.headers.get("Retry-After", "").strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
