"""Staging tables are private, not just hidden: no SQL a reader sends may read them.

Datasette hides tables whose names start with ``_`` from listings, but anyone may
run SQL, and ``select * from _civicflow_stage_...`` would show rows that have not
passed the swap yet (or never will). Every connection Datasette opens to a portal
database therefore gets a SQLite authorizer that refuses to read the private tables
(see ``publish_store.is_private``). SQLite asks the authorizer for every table a
statement touches, including through views, sub-queries and ``count(*)``, so there
is no SQL way around it.

The plugin's own steps (prepare, load, swap, status) are the only code that needs
those tables; they run inside :func:`trusted`, which lifts the refusal for the
current thread only while the step runs, and only ever on Datasette's write
connection: SQLite checks a statement when it is compiled and Python caches compiled
statements per connection, so a trusted statement compiled on a reader's connection
could be reused, unchecked, by a reader sending the same SQL text.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from civicflow.portals.publish_store import is_private

T = TypeVar("T")
_TRUST = threading.local()


def trusted(fn: Callable[[sqlite3.Connection], T]) -> Callable[[sqlite3.Connection], T]:
    """``fn`` with the private tables readable while it runs (on its own thread)."""

    def run(conn: sqlite3.Connection) -> T:
        _TRUST.on = True
        try:
            return fn(conn)
        finally:
            _TRUST.on = False

    return run


def authorizer(action: int, arg1: Any, arg2: Any, database: Any, source: Any) -> int:
    """Deny reading a private table unless the current thread runs a trusted step."""
    if (
        action == sqlite3.SQLITE_READ
        and isinstance(arg1, str)
        and is_private(arg1)
        and not getattr(_TRUST, "on", False)
    ):
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def protect(conn: sqlite3.Connection) -> None:
    conn.set_authorizer(authorizer)
