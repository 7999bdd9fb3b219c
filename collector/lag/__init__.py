"""Consumer lag: the sampler that runs in the collector (`service`), what it reads from a
broker (`jetstream`, `kafka`: everything broker-specific lives there), the figures it derives
(`figures`), statuses and crossings (`thresholds`), the one writer of the lag tables
(`writer`), and the queries pages share (`readers`, `reconcile`).

Imports: Django, `collector.models`, `collector.brokers`, `collector.ingest.subjects`,
`collector.deadletters.alerts` (webhook posting), `collector.partitions`, `collector.db`."""
