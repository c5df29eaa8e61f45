"""Dataset specs: pydantic models, YAML loading with file/line/key errors, JSON Schema."""

from civicflow.spec.errors import SpecError, SpecProblem
from civicflow.spec.loader import find_dataset, load_all, load_dataset, load_model
from civicflow.spec.models import DatasetSpec, FieldSpec, FieldType

__all__ = [
    "DatasetSpec",
    "FieldSpec",
    "FieldType",
    "SpecError",
    "SpecProblem",
    "find_dataset",
    "load_all",
    "load_dataset",
    "load_model",
]
