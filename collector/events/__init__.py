"""Events: the one writer of stored messages with their per-minute rollup and topic list,
the readers that pages and the API share, and retention by day partitions.
Imports `collector.models` and `collector.partitions`."""
