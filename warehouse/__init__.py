"""The only package that imports duckdb or holds SQL: the mmpipe warehouse (DuckLake over Parquet)."""

from warehouse.guard import QueryError, ReadOnlyError
from warehouse.store import TABLES, Warehouse, utcnow

__all__ = ["TABLES", "QueryError", "ReadOnlyError", "Warehouse", "utcnow"]
