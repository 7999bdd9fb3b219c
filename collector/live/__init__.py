"""Live: committed events forwarded to the browser. The forwarder runs in the collector
(after each commit, batched onto the Redis channel layer); the group name, the message
shape, the filters and the cursors live here so the web side imports them and never the
reverse; the readers backfill gaps from PostgreSQL; the summary kinds feed the cheap live
counters other pages show. Imports `collector.models`, `collector.ingest.subjects` and
the readers of other rooms (for summaries)."""
