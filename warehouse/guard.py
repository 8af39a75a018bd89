"""The gate in front of user SQL (`mmpipe sql`, `export --query`): one read-only statement that can
name nothing but the warehouse.

The connection it runs on is already read-only and confined (READ_ONLY attach, external access
limited to the lake's data folder, configuration locked). Those settings alone leave holes: COPY
into the data folder, the maintenance table functions (ducklake_cleanup_old_files deletes files
even on a read-only attach), the sqlite/postgres scanners, which ignore enable_external_access,
and every other database the connection can see: the DuckLake catalog database (with PostgreSQL,
every schema of it and pg_catalog), DuckDB's system views (duckdb_databases prints the catalog DSN)
and PRAGMAs. So the statement itself is checked against allow-lists read from DuckDB's own parse
tree: exactly one statement, of SELECT type (DESCRIBE, SHOW and SUMMARIZE are SELECTs; EXPLAIN
without ANALYZE of a SELECT is allowed); every table it names is one of the warehouse's own tables
and views (or a CTE of the query that shadows nothing else); every table function is on a short
list; and the scalar functions that read settings or the catalog are refused.
"""

from __future__ import annotations

import json
import re

import duckdb

ALLOWED_TABLE_FUNCTIONS = {
    "snapshots", "ducklake_snapshots", "current_snapshot", "last_committed_snapshot",
    "table_changes", "ducklake_table_changes", "table_insertions", "table_deletions",
    "ducklake_table_insertions", "ducklake_table_deletions", "range", "generate_series", "unnest",
    "json_each", "json_tree",
}
# Scalar functions that read settings, variables, the environment or other catalogs' entries.
_REFUSED_FUNCTIONS = re.compile(r"^(current_setting|getvariable|getenv|current_schemas|current_catalog|"
                                r"(pg|duckdb|ducklake|pragma|sqlite|postgres|has)_.*)$")
# `SHOW TABLES` lists the current schema (the warehouse); `SHOW ALL TABLES`, SHOW DATABASES etc. do not.
_ALLOWED_SHOW = {'"tables"'}
_WAREHOUSE_QUALIFIERS = {("", ""), ("", "main"), ("lake", ""), ("lake", "main"), ("", "lake")}
_EXPLAIN = re.compile(r"^\s*explain\s+(?!analy[sz]e\b)", re.IGNORECASE)
_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)|(://[^:/@\s]+:)([^@\s]+)(@)", re.IGNORECASE)


class ReadOnlyError(ValueError):
    """A user query tried to do something other than read the warehouse."""


class QueryError(ValueError):
    """DuckDB rejected a query; the message is DuckDB's own."""


def redact(text: str) -> str:
    """A message with any password (libpq key=value or URL form) replaced by ***."""
    return _PASSWORD.sub(lambda m: (m.group(1) + "***") if m.group(1) else (m.group(3) + "***" + m.group(5)), text)


def without_password(dsn: str) -> str:
    """A libpq DSN (key=value or URL) without its password: what may be stored or printed; libpq finds
    the password in $MMPIPE_CATALOG_DSN, $PGPASSWORD or ~/.pgpass."""
    dsn = _PASSWORD.sub(lambda m: "" if m.group(1) else m.group(3)[:-1] + m.group(5), dsn)
    return " ".join(dsn.split())


def _walk(node, found: dict[str, set]) -> dict[str, set]:
    """Collect table functions, table references, SHOW targets, scalar functions and CTE names."""
    if isinstance(node, dict):
        kind = node.get("type")
        if kind == "TABLE_FUNCTION" and isinstance(node.get("function"), dict):
            found["table_functions"].add(str(node["function"].get("function_name", "")).lower())
        elif kind == "BASE_TABLE":
            found["tables"].add((str(node.get("catalog_name", "")).lower(), str(node.get("schema_name", "")).lower(),
                                 str(node.get("table_name", ""))))
        elif kind == "SHOW_REF" and node.get("query") is None:  # SHOW TABLES [FROM x], SHOW ALL TABLES, ...
            found["shows"].add((str(node.get("table_name", "")), str(node.get("catalog_name", "")).lower(),
                                str(node.get("schema_name", "")).lower()))
        if node.get("class") == "FUNCTION" and "function_name" in node:
            found["functions"].add(str(node["function_name"]).lower())
        cte_map = node.get("cte_map")
        if isinstance(cte_map, dict):
            found["ctes"].update(str(e.get("key", "")).lower() for e in cte_map.get("map", []) if isinstance(e, dict))
        for value in node.values():
            _walk(value, found)
    elif isinstance(node, list):
        for value in node:
            _walk(value, found)
    return found


def _table_refusals(found: dict[str, set], tables: set[str], visible: set[str]) -> list[str]:
    """What the query names outside the warehouse. A CTE may not take a name that resolves elsewhere
    (e.g. pg_settings), or one scope's CTE would let another scope read the real thing."""
    bad = [f"CTE {c}" for c in found["ctes"] if c in visible and c not in tables]
    for catalog, schema, name in found["tables"]:
        low = name.lower()
        if any(ch in name for ch in "/\\.:"):
            bad.append(f"file {name}")
        elif (catalog, schema) == ("", "") and (low in tables or low in found["ctes"]):
            continue
        elif (catalog, schema) in _WAREHOUSE_QUALIFIERS and low in tables:
            continue
        else:
            bad.append(".".join(p for p in (catalog, schema, name) if p))
    bad += [" ".join(["SHOW", name.strip('"') or "TABLES", "FROM" if catalog or schema else "",
                      ".".join(p for p in (catalog, schema) if p)]).strip()
            for name, catalog, schema in found["shows"]
            if name not in _ALLOWED_SHOW or (catalog, schema) not in _WAREHOUSE_QUALIFIERS]
    bad += [f"{f}()" for f in found["functions"] if _REFUSED_FUNCTIONS.match(f)]
    bad += [f"{f}()" for f in found["table_functions"] - ALLOWED_TABLE_FUNCTIONS]
    return sorted(set(bad))


def check_user_query(con: duckdb.DuckDBPyConnection, query: str, tables: set[str] | None = None,
                     visible: set[str] | None = None) -> str:
    """The statement to run, or ReadOnlyError saying what was refused.

    `tables`: the warehouse's table and view names (lower case); `visible`: every table or view name
    the connection could resolve, in any database (what a CTE may not shadow).
    """
    statements = con.extract_statements(query)
    if len(statements) != 1:
        raise ReadOnlyError(f"refused: `mmpipe sql` runs exactly one statement; got {len(statements)}")
    statement = statements[0]
    kind = statement.type.name
    text = statement.query
    inner = text
    if re.match(r"^\s*pragma\b", text, re.IGNORECASE):
        raise ReadOnlyError("refused: PRAGMA (user SQL reads the warehouse tables and views only)")
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
    found = _walk(tree, {"table_functions": set(), "tables": set(), "shows": set(), "functions": set(),
                         "ctes": set()})
    refused = _table_refusals(found, tables or set(), visible or set())
    if refused:
        raise ReadOnlyError(f"refused: {', '.join(refused)} (user SQL reads the warehouse tables and views "
                            f"only; table functions allowed: {', '.join(sorted(ALLOWED_TABLE_FUNCTIONS))})")
    return text
