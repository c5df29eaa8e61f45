"""The one exception the privacy stage raises for configuration problems."""

from __future__ import annotations


class PrivacyError(Exception):
    """The spec cannot be protected as written (no hash key, unknown detector, wrong type).

    Raised before any work is done. Messages name the field, env var or block involved
    and never include a secret's value.
    """
