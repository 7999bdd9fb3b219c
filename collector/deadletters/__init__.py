"""Dead letters: capture (JetStream advisories and DLQ subjects), the DLQ conventions, the
follow-up of retries, alerts, retention, and the readers that pages and the API share.
Imports `collector.models`, `collector.brokers` and `collector.ingest.subjects`."""
