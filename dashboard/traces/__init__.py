"""Traces: search, the waterfall, share links, RED view, compare, and the Jaeger-compatible
query API under `/jaeger/api/`. Imports `collector` (models, readers) and dashboard helpers."""
