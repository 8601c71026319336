"""One module per source: each verifies a request, parses its body and maps it to crmsync events,
and owns everything else about its source (settings, mapping table, replies, sample): kind.py.

The one list of them is registry.py. `standard` is crmsync's own contract; `hubspot`, `salesforce`
and `pipedrive` are the CRMs' native webhooks; `configured` serves each CRM declared under
[sources.NAME] in the mappings file (webhooks/declarations.py), without code. A source never reaches
into the queue or the worker: it hands a `SourceBatch` (items.py) to intake. Shared helpers live in
items.py, record_mapping.py and mapping_file.py; sources never import each other.
"""
