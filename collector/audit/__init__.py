"""The audit log: who did what, when, and how it went. Its readers serve `/audit/`.
Imports `collector.models`."""
