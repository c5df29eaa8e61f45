"""civicflow: trusted open data and performance scorecards for city governments.

The library is Prefect-free: every stage is a plain function or small class.
Flows in the project's ``flows/`` folder wire these calls into Prefect tasks.
"""

__version__ = "0.1.0"
