"""The SODA side of the Socrata adapter, through sodapy 2.2.0: row upserts and deletes by
row identifier, view metadata reads and updates, the dataset permission.

sodapy raises ``requests.HTTPError`` for any status but 200/202 and retries nothing;
:func:`soda_call` turns that into what the adapter's ``retry`` understands (:class:`Busy`
for 429 and 5xx) or a PortalError naming the status and Socrata's error code, never the
message (Socrata's messages may quote a row's values). sodapy builds ``https://`` URLs
unless given a ``session_adapter``; the adapter mounted here also makes every request
trust the configured CA bundle (``REQUESTS_CA_BUNDLE`` in the environment would beat
``session.verify``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import requests
from requests.adapters import HTTPAdapter

from civicflow.http_retry import retry_after
from civicflow.portals.base import PortalError

T = TypeVar("T")


class Busy(Exception):
    """A 429 or 5xx worth retrying; ``retry_after`` in seconds when the portal said."""

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status, self.retry_after = status, retry_after


class Missing(PortalError):
    """Socrata answered 404: the dataset (or row) is not there."""


class _TrustAdapter(HTTPAdapter):
    """Sends every request with ``verify`` = the configured CA bundle (or True)."""

    def __init__(self, verify: str | bool) -> None:
        super().__init__()
        self._verify = verify

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs["verify"] = self._verify
        return super().send(request, **kwargs)


def soda_client(
    url: str,
    host: str,
    *,
    app_token: str | None,
    keys: tuple[str, str],
    verify: str | bool,
    timeout: float,
) -> Any:
    """A sodapy client for ``url`` (scheme and ``host`` with its port) with the user's keys."""
    from sodapy import Socrata

    prefix = url.split("://", 1)[0] + "://"
    return Socrata(
        host,
        app_token,
        username=keys[0],
        password=keys[1],
        session_adapter={"prefix": prefix, "adapter": _TrustAdapter(verify)},
        timeout=timeout,
    )


def soda_call(step: Callable[[], T], what: str, *, credentials: str) -> T:
    """``step`` (one sodapy call); its HTTP errors as Busy or PortalError."""
    try:
        return step()
    except requests.HTTPError as exc:
        response = exc.response
        if response is None:
            raise PortalError(f"could not {what}: no response") from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise Busy(status, retry_after(response)) from None
        if status == 404:
            raise Missing(f"could not {what}: HTTP 404") from None
        if status in (401, 403):
            raise PortalError(
                f"Socrata refused the credentials (HTTP {status}) to {what}: check {credentials}"
            ) from None
        raise PortalError(f"could not {what}: HTTP {status} {_code(response)}".rstrip()) from None


def _code(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("code", ""))[:64] if isinstance(body, dict) else ""
