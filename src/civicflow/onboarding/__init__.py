"""Onboarding: draft a dataset spec and its expectation suite from a profile of the data.

``read.py`` reads any source kind into the all-text table every source produces,
``profile.py`` profiles it column by column (types, every timestamp format present,
ranges, enumerations, sentinels; ``infer.py``, ``keys.py``), ``pii.py`` flags likely
personal data with a suggested privacy rule, and ``draft.py`` turns the profile into a
spec (``render.py`` writes it as commented YAML) and a GX suite (``suite.py``). Every
suggestion a person must decide is marked (``civicflow.spec.marks``).
"""

from civicflow.onboarding.draft import Draft, draft_dataset
from civicflow.onboarding.profile import ColumnProfile, TableProfile, profile_table
from civicflow.onboarding.read import SourceTable, read_target

__all__ = [
    "ColumnProfile",
    "Draft",
    "SourceTable",
    "TableProfile",
    "draft_dataset",
    "profile_table",
    "read_target",
]
