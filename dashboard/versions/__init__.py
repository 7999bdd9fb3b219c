"""The version pages and API: /versions/, /versions/<type>/, /api/versions, /api/versions/<type>
and the inferred JSON Schema of each version. Reads through collector.versions.readers and
collector.versions.detail only."""
