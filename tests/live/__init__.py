"""Live: the websocket `/ws/events/` from a page, under the Content-Security-Policy."""
