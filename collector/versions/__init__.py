"""Event versions in real use: what the collector learns about each type's versions (shapes,
inferred schemas, drift, hourly and daily counts, producers and consumers per version) and the
readers that /versions/ and /api/versions share. Imports collector.models and the store only;
`order` and `inference` are pure."""
