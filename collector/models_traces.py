"""The store's trace tables: spans and trace summaries."""

__all__ = []
