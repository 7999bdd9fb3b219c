"""One adapter per broker: each turns a broker into a stream of raw messages plus the few
admin calls the other rooms need (stream lookup, publish). Imports the standard library,
the broker's client library and `collector.ingest.subjects` only."""
