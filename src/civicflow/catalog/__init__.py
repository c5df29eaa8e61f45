"""The residents' catalog on the local Datasette portal: dataset pages, downloads, DCAT.

Everything here is read from the portal database itself: each publish writes the
dataset's metadata (from its spec: title, department, steward, data dictionary in the
spec's order, privacy notes) into ``_civicflow_metadata`` and its version into
``_civicflow_versions`` in the same transaction as the rows (``portals/publish_store``).
So the catalog needs neither the specs nor the run ledger, and never shows a version
that is not live. Modules: ``entries`` (reading those tables), ``pages`` (HTML),
``downloads`` (streamed formats), ``dcat`` (DCAT-US ``/data.json``, JSON-LD), ``i18n``
(English and Spanish), ``plugin`` (the Datasette hooks).
"""
