"""Tests, one folder per room (the same names as in `collector/` and `dashboard/`), against real
PostgreSQL, NATS JetStream and Redis, with browser tests in a real headless Chromium."""
