"""The gate in front of user SQL (`mmpipe sql`): one read-only statement, known table functions only.

The connection it runs on is already read-only and confined (READ_ONLY attach, external access
limited to the lake's data folder, configuration locked). Those settings alone leave holes: COPY
into the data folder, the maintenance table functions (ducklake_cleanup_old_files deletes files
even on a read-only attach), and the sqlite/postgres scanners, which ignore enable_external_access.
So the statement itself is checked too: exactly one, of SELECT type (DESCRIBE, SHOW and SUMMARIZE
are SELECTs; EXPLAIN without ANALYZE of a SELECT is allowed), and every table function it calls is
on an allow-list, read from DuckDB's own parse tree.
"""

from __future__ import annotations

import json
import re

import duckdb

ALLOWED_TABLE_FUNCTIONS = {
    "snapshots", "ducklake_snapshots", "current_snapshot", "last_committed_snapshot",
    "table_changes", "ducklake_table_changes", "table_insertions", "table_deletions",
    "ducklake_table_insertions", "ducklake_table_deletions", "range", "generate_series", "unnest",
    "duckdb_tables", "duckdb_columns", "duckdb_views", "duckdb_schemas", "json_each", "json_tree",
}
_EXPLAIN = re.compile(r"^\s*explain\s+(?!analy[sz]e\b)", re.IGNORECASE)


class ReadOnlyError(ValueError):
    """A user query tried to do something other than read the warehouse."""


class QueryError(ValueError):
    """DuckDB rejected a query; the message is DuckDB's own."""


def _table_functions(node, out: set[str]) -> set[str]:
    if isinstance(node, dict):
        if node.get("type") == "TABLE_FUNCTION" and isinstance(node.get("function"), dict):
            out.add(str(node["function"].get("function_name", "")).lower())
        if node.get("type") == "BASE_TABLE" and any(ch in str(node.get("table_name", "")) for ch in "/\\.:"):
            out.add(f"file {node.get('table_name')}")
        for value in node.values():
            _table_functions(value, out)
    elif isinstance(node, list):
        for value in node:
            _table_functions(value, out)
    return out


def check_user_query(con: duckdb.DuckDBPyConnection, query: str) -> str:
    """The statement to run, or ReadOnlyError saying what was refused."""
    statements = con.extract_statements(query)
    if len(statements) != 1:
        raise ReadOnlyError(f"refused: `mmpipe sql` runs exactly one statement; got {len(statements)}")
    statement = statements[0]
    kind = statement.type.name
    text = statement.query
    inner = text
    if kind == "EXPLAIN":
        if not _EXPLAIN.match(text):
            raise ReadOnlyError("refused: EXPLAIN ANALYZE runs its statement; use EXPLAIN or a SELECT")
        inner = _EXPLAIN.sub("", text, count=1)
        if con.extract_statements(inner)[0].type.name != "SELECT":
            raise ReadOnlyError("refused: EXPLAIN of anything but a SELECT")
    elif kind != "SELECT":
        raise ReadOnlyError(f"refused: `mmpipe sql` runs read-only queries (SELECT, WITH, DESCRIBE, SHOW, "
                            f"SUMMARIZE, EXPLAIN); got a {kind} statement. The warehouse is changed by flows only.")
    tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [inner]).fetchone()[0])
    if tree.get("error"):
        raise QueryError(tree.get("error_message") or "cannot parse the query")
    refused = _table_functions(tree, set()) - ALLOWED_TABLE_FUNCTIONS
    if refused:
        raise ReadOnlyError(f"refused: {', '.join(sorted(refused))} (user SQL reads the warehouse tables and views "
                            f"only; table functions allowed: {', '.join(sorted(ALLOWED_TABLE_FUNCTIONS))})")
    return text
