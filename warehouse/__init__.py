"""The only package that imports duckdb or holds SQL: the mmpipe warehouse."""

from warehouse.store import TABLES, QueryError, ReadOnlyError, Warehouse, utcnow

__all__ = ["TABLES", "QueryError", "ReadOnlyError", "Warehouse", "utcnow"]
