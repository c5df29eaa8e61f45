"""Load YAML files into pydantic models, with errors naming file, line and key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from civicflow.spec.errors import SpecError, SpecProblem
from civicflow.spec.marks import mark_problems
from civicflow.spec.models import DatasetSpec

M = TypeVar("M", bound=BaseModel)


def _line_index(node: yaml.Node, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], int]:
    """Map every key path in a YAML document to its 1-based line number."""
    lines = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = (*path, key_node.value)
            lines.update(_line_index(value_node, child))
            lines[child] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.update(_line_index(item, (*path, i)))
    return lines


def _line_for(lines: dict[tuple[Any, ...], int], loc: tuple[Any, ...]) -> int | None:
    # Pydantic adds union tags (e.g. 'csv') to loc; drop parts until a known path matches.
    loc = tuple(str(p) if not isinstance(p, int) else p for p in loc)
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return lines.get(())


#: libyaml's safe loader where PyYAML was built with it: parsing every spec is on each
#: CLI call's path, and the pure-Python parser takes most of a second for the bundled set
_SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: Path) -> tuple[Any, dict[tuple[Any, ...], int]]:
    """Parse a YAML file; syntax errors become a SpecError with the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(
            [SpecProblem(path, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})")]
        ) from exc
    try:
        node = yaml.compose(text, Loader=_SAFE_LOADER)
        data = yaml.load(text, Loader=_SAFE_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise SpecError(
            [SpecProblem(path, "", f"YAML does not parse: {getattr(exc, 'problem', exc)}", line)]
        ) from exc
    lines = _line_index(node) if node is not None else {}
    return data, lines


def validate_model(model: type[M], data: Any, path: Path, lines: dict[tuple[Any, ...], int]) -> M:
    """Validate parsed YAML into ``model``; every error names file, line and dotted key.

    A file with a ``CONFIRM:`` mark left (a drafted suggestion nobody decided) is refused
    first, one problem per mark: the marks are what the steward has to do next.
    """
    if marks := mark_problems(data, path, lines):
        raise SpecError(marks)
    if not isinstance(data, dict):
        raise SpecError(
            [
                SpecProblem(
                    path, "", f"expected a mapping at the top level, got {type(data).__name__}"
                )
            ]
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            key = ".".join(str(p) for p in loc)
            message = err["msg"]
            if err["type"] == "extra_forbidden":
                message = "unknown key (check the spelling; see datasets/spec.schema.json)"
            elif err["type"] == "enum" or err["type"] == "literal_error":
                message = f"{message} (got {err.get('input')!r})"
            problems.append(SpecProblem(path, key, message, _line_for(lines, loc)))
        raise SpecError(problems) from None


def load_model(model: type[M], path: Path) -> M:
    data, lines = read_yaml(path)
    return validate_model(model, data, path, lines)


def load_named(model: type[M], path: Path) -> M:
    """Load a file whose ``id`` must match its file name (datasets, KPIs)."""
    item = load_model(model, path)
    item_id = getattr(item, "id")  # noqa: B009  (every named model has an id)
    if item_id != path.stem:
        _, lines = read_yaml(path)
        message = f"id {item_id!r} must match the file name {path.stem!r}"
        raise SpecError([SpecProblem(path, "id", message, lines.get(("id",)))])
    return item


def load_dataset(path: Path) -> DatasetSpec:
    """Load one dataset spec; its id must match the file name."""
    return load_named(DatasetSpec, path)


def dataset_paths(datasets_dir: Path) -> list[Path]:
    return sorted(p for p in datasets_dir.glob("*.yaml"))


def load_each(paths: list[Path], load: Callable[[Path], M]) -> dict[str, M]:
    """Load every file keyed by its ``id``; all problems from all files in one SpecError."""
    loaded: dict[str, M] = {}
    problems: list[SpecProblem] = []
    for path in paths:
        try:
            item = load(path)
        except SpecError as exc:
            problems.extend(exc.problems)
            continue
        loaded[getattr(item, "id")] = item  # noqa: B009  (every loaded model has an id)
    if problems:
        raise SpecError(problems)
    return loaded


def load_all(datasets_dir: Path) -> dict[str, DatasetSpec]:
    """Every dataset spec in the folder; all problems from all files in one SpecError."""
    return load_each(dataset_paths(datasets_dir), load_dataset)


def find_dataset(datasets_dir: Path, dataset_id: str) -> DatasetSpec:
    path = datasets_dir / f"{dataset_id}.yaml"
    if not path.is_file():
        known = ", ".join(p.stem for p in dataset_paths(datasets_dir)) or "none"
        raise SpecError([SpecProblem(path, "", f"no dataset {dataset_id!r} (known: {known})")])
    return load_dataset(path)


# -- expectation suites ------------------------------------------------------------
# One rule for the whole project (quality, ``civicflow check``, ``publish``, metrics):
# every dataset has its suite file, ``expectations/<suite_name>.json``. A missing
# file is a spec error, never "structure checks only".


def suite_file(spec: DatasetSpec, expectations_dir: Path) -> Path:
    """Where ``spec``'s expectation suite lives (whether or not the file exists)."""
    return Path(expectations_dir) / f"{spec.suite_name}.json"


def missing_suite(
    spec: DatasetSpec, expectations_dir: Path, spec_path: Path | None = None
) -> SpecProblem | None:
    """The problem to report when ``spec``'s suite file is absent, else None."""
    path = suite_file(spec, expectations_dir)
    if path.is_file():
        return None
    named = "expectation_suite" if spec.expectation_suite else "expectation_suite (default: the id)"
    # Point at the spec's expectation_suite line when the spec file is known.
    line = None
    if spec_path is not None and spec_path.is_file():
        line = read_yaml(spec_path)[1].get(("expectation_suite",))
    return SpecProblem(
        spec_path or path,
        "expectation_suite",
        f"dataset {spec.id} has no expectation suite: expected the file {path} ({named})",
        line,
    )


def require_suite(spec: DatasetSpec, expectations_dir: Path, spec_path: Path | None = None) -> Path:
    """The suite file of ``spec``; SpecError naming the dataset and the file if absent."""
    problem = missing_suite(spec, expectations_dir, spec_path)
    if problem is not None:
        raise SpecError([problem])
    return suite_file(spec, expectations_dir)
