"""The JSON Schema of dataset specs, published so editors validate YAML as it is typed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from civicflow.spec.models import DatasetSpec


def _restore_descriptions(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """Pydantic omits a field's description next to a ``$ref`` with a default factory; put it back."""
    props = schema.get("properties", {})
    for name, info in model.model_fields.items():
        prop = props.get(info.alias or name)
        if prop is not None and "description" not in prop and info.description:
            prop["description"] = info.description


def json_schema(model: type[BaseModel] = DatasetSpec, title: str | None = None) -> dict[str, Any]:
    schema = model.model_json_schema()
    _restore_descriptions(schema, model)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    if title:
        schema["title"] = title
    return schema


def render(model: type[BaseModel] = DatasetSpec, title: str | None = None) -> str:
    return json.dumps(json_schema(model, title), indent=2, sort_keys=True) + "\n"


def write(path: Path, model: type[BaseModel] = DatasetSpec, title: str | None = None) -> bool:
    """Write the schema; True when the file changed."""
    text = render(model, title)
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.write_text(text, encoding="utf-8")
    return True
