"""Privacy guard: declared rules per field, a PII scan, and a report, between validation
and publishing. Nothing is published while the scan finds something the spec does not
allow in writing.

``check_ready`` runs before any work (a missing hash key stops the run there);
``protect`` applies the rules and scans the frame that would be published.
"""

from civicflow.privacy.detectors import DETECTORS, detector_names
from civicflow.privacy.errors import PrivacyError
from civicflow.privacy.guard import ProtectResult, check_ready, protect, published_type
from civicflow.privacy.keys import ENV_VAR, SECRET_BLOCK, HashKey, resolve_hash_key
from civicflow.privacy.report import Allowance, Finding, PrivacyReport, RuleApplied
from civicflow.privacy.rules import RULES

__all__ = [
    "DETECTORS",
    "ENV_VAR",
    "RULES",
    "SECRET_BLOCK",
    "Allowance",
    "Finding",
    "HashKey",
    "PrivacyError",
    "PrivacyReport",
    "ProtectResult",
    "RuleApplied",
    "check_ready",
    "detector_names",
    "protect",
    "published_type",
    "resolve_hash_key",
]
