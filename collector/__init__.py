"""The collector: owns the store's schema (models, migrations) and everything that writes it —
broker adapters, decoders, span receivers, the collector process and its commands. It never
imports `dashboard`; the web side imports it (its readers and models) instead."""
