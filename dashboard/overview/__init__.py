"""Overview: the front page (counts, busiest topics, collectors), the header search, the
overview API and `/healthz`. Imports `collector` readers and dashboard helpers."""
