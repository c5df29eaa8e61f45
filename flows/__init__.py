"""Prefect flows: thin wiring of civicflow library calls into tasks.

Library loggers ("civicflow.*") are forwarded to Prefect so stewards read the
stage logs in the Prefect UI next to the run.
"""

import os

os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "civicflow")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
