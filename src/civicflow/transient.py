"""Which failures are worth a retry: the network, a server error, a locked database.

Everything else (a refused request, a bug, a compare-and-swap conflict) fails at once:
retrying cannot help and may hide the cause. Expected rejections (bad input, failed
checks, privacy findings) are outcomes, not exceptions, so they never reach here.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator

from civicflow.portals.base import PortalConflict


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _network_errors() -> tuple[type[BaseException], ...]:
    """Client libraries' connection errors, for those already imported (never imports)."""
    found: list[type[BaseException]] = [ConnectionError, TimeoutError]
    if "httpx" in sys.modules:
        found.append(sys.modules["httpx"].TransportError)
    if "requests" in sys.modules:
        exceptions = sys.modules["requests"].exceptions
        found += [exceptions.ConnectionError, exceptions.Timeout]
    if "psycopg" in sys.modules:
        found.append(sys.modules["psycopg"].OperationalError)
    return tuple(found)


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status", None)
    if status is None:
        status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a network error, a 5xx or 429, or a locked
    SQLite database. A portal conflict anywhere in the chain is final."""
    chain = list(_chain(exc))
    if any(isinstance(e, PortalConflict) for e in chain):
        return False
    network = _network_errors()
    for e in chain:
        if isinstance(e, network):
            return True
        if isinstance(e, sqlite3.OperationalError) and "locked" in str(e):
            return True
        status = _status(e)
        if status is not None and (status >= 500 or status == 429):
            return True
    return False
