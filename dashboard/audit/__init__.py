"""The audit log page (`/audit/`). Imports `collector` and dashboard helpers."""
