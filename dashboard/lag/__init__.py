"""Consumers: the list of every consumer with its lag, one consumer's history, configuration,
service, dead letters, traces, reconciliation and timeline, and their JSON API. Imports
`collector` (models, lag readers, reconciliation) and dashboard helpers."""
