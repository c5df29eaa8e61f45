"""The HMAC key for the ``hash`` rule: from the environment, else a Prefect Secret block.

The key object never shows its value (repr, str, pickling into reports), so passing it
around cannot leak it into logs or exception messages.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from civicflow.privacy.errors import PrivacyError
from civicflow.settings import Settings

ENV_VAR = "CIVICFLOW_HASH_KEY"
SECRET_BLOCK = "civicflow-hash-key"
MIN_KEY_LENGTH = 16


class HashKey:
    """An HMAC-SHA256 key. ``repr``/``str`` show only where it came from."""

    __slots__ = ("_key", "origin")

    def __init__(self, value: str | bytes, origin: str) -> None:
        raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        if len(raw) < MIN_KEY_LENGTH:
            # The length is safe to say; the value is not.
            raise PrivacyError(
                f"the hash key from {origin} is too short ({len(raw)} bytes; need at least {MIN_KEY_LENGTH})"
            )
        self._key = raw
        self.origin = origin

    def hexdigest(self, text: str) -> str:
        return hmac.new(self._key, text.encode("utf-8"), hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return f"HashKey(origin={self.origin!r}, value=<hidden>)"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("HashKey cannot be pickled (it holds a secret)")


def _from_prefect_block() -> str | None:
    """The Secret block's value, or None when no such block exists."""
    from prefect.blocks.system import Secret

    try:
        # _sync: the sync path even when called from inside a running event loop.
        block: Any = Secret.load(SECRET_BLOCK, _sync=True)  # type: ignore[call-arg]
    except ValueError:  # Prefect's "Unable to find block document named ..."
        return None
    value = block.get()
    return str(value) if value else None


def resolve_hash_key(settings: Settings) -> HashKey | None:
    """The key from ``CIVICFLOW_HASH_KEY``, else the ``civicflow-hash-key`` block, else None."""
    value = settings.secret(ENV_VAR)
    if value:
        return HashKey(value, f"env {ENV_VAR}")
    try:
        value = _from_prefect_block()
    except ImportError:
        return None
    except Exception as exc:
        # Say what failed, not what it said: the message of an arbitrary error is not ours to vouch for.
        raise PrivacyError(
            f"could not read the Prefect Secret block {SECRET_BLOCK!r} ({type(exc).__name__}); "
            f"set {ENV_VAR} or check the Prefect API"
        ) from exc
    return HashKey(value, f"Prefect Secret block {SECRET_BLOCK!r}") if value else None


def require_hash_key(settings: Settings, fields: list[str]) -> HashKey:
    key = resolve_hash_key(settings)
    if key is None:
        raise PrivacyError(
            f"field(s) {', '.join(fields)} use the hash rule but no hash key is set: "
            f"set the environment variable {ENV_VAR} (at least {MIN_KEY_LENGTH} characters) "
            f"or create a Prefect Secret block named {SECRET_BLOCK!r}"
        )
    return key
