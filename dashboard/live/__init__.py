"""Live: the `/live/` page and the websocket (`/ws/events/`) that streams committed events
and live summaries to the browser; its per-connection tail (filters, rate cap, credit,
gap backfill) and the process's summary hub. Imports `collector` (the live room's group
name, message shape, filters, readers and summary kinds) and dashboard helpers."""
