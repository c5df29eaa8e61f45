"""Extract: copy the raw input untouched, read it with its source kind, apply types.

``extract()`` is the one entry point; source kinds register themselves by name in
``base.py``; a built-in kind's module is imported when first asked for.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa

from civicflow.privatefs import READ_ONLY_MODE, private_file
from civicflow.settings import Settings
from civicflow.sources.base import (
    BatchSource,
    Extract,
    ExtractError,
    RemoteSource,
    Source,
    SourceUnchanged,
    get_source,
    register_source,
    registered_sources,
)
from civicflow.sources.cast import cast_frame
from civicflow.spec.models import DatasetSpec, FileSource, HttpSource

__all__ = [
    "Extract",
    "RawCopy",
    "ExtractError",
    "RemoteSource",
    "Source",
    "SourceUnchanged",
    "can_read_batches",
    "copy_input",
    "extract",
    "read_batches",
    "read_copy",
    "get_source",
    "register_source",
    "registered_sources",
    "resolve_source_path",
]


def resolve_source_path(
    spec: DatasetSpec, settings: Settings, override: Path | str | None = None
) -> Path:
    """The input file: an explicit override, or the spec's path (``{var}`` = the var folder)."""
    if override is not None:
        return Path(override).resolve()
    if not isinstance(spec.source, FileSource):
        raise ExtractError(
            f"dataset {spec.id}: a {spec.source.kind} source is pulled from its service, not read from a file"
        )
    declared = spec.source.path.replace("{var}", str(settings.var_dir))
    path = Path(declared)
    return path if path.is_absolute() else (settings.project_dir / path)


def _write_immutable(chunks: Iterable[bytes], dest: Path) -> str:
    """Write ``chunks`` to ``dest`` in order, returning their sha256 (one pass).

    The copy holds residents' raw values (exact addresses, names): it is owner-read-only
    (0400) in a 0700 folder, private from its first byte (``private_file``); if a chunk
    cannot be had (a file error, a pull that fails half-way) nothing is left at ``dest``.
    """
    digest = hashlib.sha256()
    with private_file(dest, READ_ONLY_MODE) as fout:
        for chunk in chunks:
            digest.update(chunk)
            fout.write(chunk)
    return digest.hexdigest()


def _file_chunks(src: Path) -> Iterator[bytes]:
    with src.open("rb") as fin:
        while chunk := fin.read(1 << 20):
            yield chunk


def _copy_immutable(src: Path, dest: Path) -> str:
    """Copy ``src`` to ``dest`` byte for byte, returning its sha256."""
    return _write_immutable(_file_chunks(src), dest)


def _shown(path: Path, settings: Settings) -> str:
    """A source file as the steward knows it: relative to the project when inside it."""
    try:
        return str(path.relative_to(settings.project_dir))
    except ValueError:
        return str(path)


def _naming_the_input(exc: ExtractError, raw_path: Path, given: str) -> ExtractError:
    """The reader's error about the raw copy, told of the file the steward gave; the
    raw copy's path goes to the private detail."""
    message = str(exc).replace(str(raw_path), given)
    if message == str(exc):
        message = f"{given}: {message}"
    detail = f"raw copy: {raw_path}" + (f"\n{exc.detail}" if exc.detail else "")
    return ExtractError(message, detail=detail)


@dataclass(frozen=True)
class RawCopy:
    """The run's immutable copy of its input, before it is read."""

    path: Path
    sha256: str
    #: the input as the steward knows it (a project-relative path, a public URL)
    given: str
    #: when the source says its data last changed (ISO 8601 UTC), None when unknown
    source_modified: str | None


def copy_input(
    spec: DatasetSpec,
    settings: Settings,
    run_id: str,
    source_path: Path | str | None = None,
    *,
    since: str | None = None,
) -> RawCopy:
    """Copy (or pull) the input to ``var/raw/<id>/<run-id>``, untouched (see ``extract``)."""
    source = get_source(spec.source.kind)
    raw_path = settings.raw_dir / spec.id / f"{run_id}{source.suffix}"
    modified: datetime | None = None
    if source_path is None and isinstance(source, RemoteSource):
        settings.private_dir(raw_path.parent)
        sha256 = _write_immutable(source.pull(spec, settings, since), raw_path)
        from civicflow.sources.http import pending_last_modified, public_url

        if isinstance(spec.source, HttpSource):
            modified = pending_last_modified(settings, spec)
        given = (
            public_url(spec.source.url)
            if isinstance(spec.source, HttpSource)
            else f"the {spec.source.kind} source's rows"
        )
    else:
        src = resolve_source_path(spec, settings, source_path)
        if not src.is_file():
            raise ExtractError(f"{src}: source file not found (dataset {spec.id}, source.path)")
        settings.private_dir(raw_path.parent)
        modified = datetime.fromtimestamp(src.stat().st_mtime, UTC)
        sha256 = _copy_immutable(src, raw_path)
        given = _shown(src, settings)
    when = modified.isoformat(timespec="seconds") if modified else None
    return RawCopy(raw_path, sha256, given, when)


def _typed(spec: DatasetSpec, raw: pa.Table, first_row: int = 1) -> pd.DataFrame:
    frame = cast_frame(spec, raw, first_row)
    if spec.transforms:
        from civicflow.sources.transforms import apply_transforms

        frame = apply_transforms(spec, frame)
    return frame


def read_copy(spec: DatasetSpec, run_id: str, copy: RawCopy) -> Extract:
    """The raw copy read whole with its source kind, typed, transforms applied."""
    try:
        raw = get_source(spec.source.kind).read(spec, copy.path)
    except ExtractError as exc:
        raise _naming_the_input(exc, copy.path, copy.given) from None
    return _extract(spec, run_id, copy, raw, _typed(spec, raw))


def _extract(
    spec: DatasetSpec, run_id: str, copy: RawCopy, raw: pa.Table, frame: pd.DataFrame
) -> Extract:
    return Extract(
        dataset_id=spec.id,
        run_id=run_id,
        raw_path=copy.path,
        sha256=copy.sha256,
        raw=raw,
        frame=frame,
        source_modified=copy.source_modified,
    )


def can_read_batches(spec: DatasetSpec) -> bool:
    """Whether the spec's source kind reads a batch of rows at a time."""
    return isinstance(get_source(spec.source.kind), BatchSource)


def read_batches(spec: DatasetSpec, run_id: str, copy: RawCopy, rows: int) -> Iterator[Extract]:
    """The raw copy as extracts of ``rows`` rows in file order, each typed, transforms
    applied (every transform reads a row's own values), indexed by the table's row
    numbers: the batches of the extract ``read_copy`` gives. Errors as ``read_copy``'s,
    raised when the batch holding the bad input is read."""
    source = get_source(spec.source.kind)
    if not isinstance(source, BatchSource):
        raise ExtractError(f"dataset {spec.id}: a {spec.source.kind} source is read whole")
    first = 1
    try:
        for raw in source.read_batches(spec, copy.path, rows):
            yield _extract(spec, run_id, copy, raw, _typed(spec, raw, first))
            first += raw.num_rows
    except ExtractError as exc:
        raise _naming_the_input(exc, copy.path, copy.given) from None


def extract(
    spec: DatasetSpec,
    settings: Settings,
    run_id: str,
    source_path: Path | str | None = None,
    *,
    since: str | None = None,
) -> Extract:
    """Copy (or pull) the input to ``var/raw/<id>/<run-id>``, read it, type it, apply transforms.

    A remote kind is pulled from its service unless ``source_path`` names a file (an
    export of it, e.g. to replay a run); ``since`` is an incremental run's watermark,
    which a remote kind may use to pull only newer rows (the caller filters again).
    """
    copy = copy_input(spec, settings, run_id, source_path, since=since)
    return read_copy(spec, run_id, copy)
