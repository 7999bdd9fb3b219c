"""Management commands: the collector (`collect`), `prune`, `ensure_admin` and `demo`."""
