"""One module per CRM: each verifies a request, parses its body and maps it to crmsync events.

A source never reaches into the queue or the worker: it hands a `SourceBatch` (items.py) to intake.
"""
