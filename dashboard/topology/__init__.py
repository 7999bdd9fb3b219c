"""The topology pages (`/topology/`, `/services/<name>/`) and `/api/topology`. Reads
`collector.topology.readers`; the graph is drawn by frontend/src/topology/ (its own bundle,
so other pages do not load the graph library)."""
