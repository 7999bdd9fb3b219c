"""The collector process: the service loop that reads a broker adapter, decodes (in a worker
process), batches and commits through each capability's writer, then acks; its metrics,
the extensions registry, the subject scope and the rule book. Imports any `collector` room."""
