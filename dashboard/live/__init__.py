"""Live: the websocket consumers (`/ws/events/`) and their routing. Imports `collector`
and dashboard helpers."""
