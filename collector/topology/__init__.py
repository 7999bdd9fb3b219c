"""Topology: the observed service graph.

- `registrations`: registration events on `service.events` decoded (pure).
- `consumers`: which topics each consumer group reads, its instances and routing (pure,
  any broker kind: see docs/ARCHITECTURE.md).
- `writer`: the one writer (span edges per minute, service instances).
- `service`: the collector extension (after-commit hook for registrations, the span pass).
- `readers`: the graph of a window, built from rollups only (events, spans, consumers,
  dead letters, registrations), and its neighbourhoods.

Imports: Django, `collector.models`, `collector.ingest.subjects`, `collector.traces.readers`.
"""
