"""The store's dead-letter tables."""

__all__ = []
