"""Benchmarks of the two hot paths (ingest, drain), each against a physical baseline in the same run.

Run `python -m bench.ingest`, `python -m bench.drain` and `python -m bench.profile {ingest,drain}`;
docs/benchmarks.md records the figures and what the profiles showed.
"""
