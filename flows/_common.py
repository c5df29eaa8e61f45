"""What every flow shares: the one stage-to-task wrapper and the flow's settings.

Deployments run flows in a worker process, not through the CLI, so the flow itself
sets umask 077: whatever it (or a library) writes under var/ is private to the owner.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import Task
from prefect.cache_policies import NO_CACHE
from prefect.states import State

from civicflow.portals import PortalConflict
from civicflow.privatefs import private_umask
from civicflow.settings import Settings, load_settings

# Only the publish stage talks to a network service; retry it for transient errors.
_RETRIES = {"publish": 2}


def _retry_unless_conflict(task: Any, task_run: Any, state: State) -> bool:
    """A conflict is final: retrying would publish over a newer version."""
    try:
        state.result(raise_on_failure=True)
    except PortalConflict:
        return False
    except Exception:  # noqa: BLE001 - any other failure may be transient
        return True
    return True


def as_task(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` as a Prefect task named ``name`` (the ``wrap`` the pipeline takes)."""
    return Task(
        fn,
        name=name,
        cache_policy=NO_CACHE,
        retries=_RETRIES.get(name, 0),
        retry_delay_seconds=3,
        retry_condition_fn=_retry_unless_conflict,
    )


def flow_settings() -> Settings:
    """The project's settings, with the process made private first (umask 077)."""
    private_umask()
    return load_settings()
