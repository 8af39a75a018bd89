"""User SQL (`mmpipe sql`, `export --query`): confined to the warehouse and bounded in time and memory.

A user's query runs on a fresh DuckDB with the lake attached read-only, file access confined to the
lake's data folder, Python replacement scans off, spilling off and the configuration locked; the
guard (warehouse.guard) lets it name the warehouse's own tables and views only. Limits: a memory
limit (DuckDB's, plus a cap on the result's size) and a time limit (an interrupt from a timer).

Some work escapes DuckDB's memory accounting (one `repeat('a', 2000000000)` allocates 2 GB in one
call and does not see an interrupt until it is done), so the commands run a user's query in a child
process whose address space is capped and which is killed at the time limit: whatever the query
does, it ends within its limits and leaves nothing running.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import duckdb
import pyarrow as pa

from warehouse.catalog import Catalog, connect
from warehouse.guard import QueryError, check_user_query, redact

DEFAULT_TIMEOUT_S = 120.0
DEFAULT_MEMORY = "2GB"
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
# What the child may use beyond the query's own memory: the interpreter, DuckDB, Arrow and the result.
_CHILD_OVERHEAD = 768 * 2**20
_START_UP_S = 30.0


class QueryLimitError(QueryError):
    """A user query ran past its time or memory limit (and was stopped)."""


def parse_size(text: str) -> int:
    """Bytes in a size like 2GB, 512MiB or 1000000."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {text!r} (e.g. 2GB, 512MB)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


@dataclass(frozen=True)
class QueryLimits:
    """How long and how much memory one user query may take."""

    timeout_s: float = DEFAULT_TIMEOUT_S
    memory: str = DEFAULT_MEMORY

    @classmethod
    def from_env(cls, timeout_s: float | None = None, memory: str | None = None) -> "QueryLimits":
        """Given values, else $MMPIPE_QUERY_TIMEOUT / $MMPIPE_QUERY_MEMORY, else the defaults."""
        timeout = timeout_s if timeout_s is not None else float(os.environ.get("MMPIPE_QUERY_TIMEOUT",
                                                                                DEFAULT_TIMEOUT_S))
        limits = cls(timeout, memory or os.environ.get("MMPIPE_QUERY_MEMORY", DEFAULT_MEMORY))
        if limits.timeout_s <= 0 or parse_size(limits.memory) < 2**20:
            raise ValueError(f"query limits must be positive (time {limits.timeout_s} s, memory {limits.memory})")
        return limits

    @property
    def memory_bytes(self) -> int:
        return parse_size(self.memory)

    @contextlib.contextmanager
    def in_env(self) -> Iterator[None]:
        """These limits in $MMPIPE_QUERY_TIMEOUT / $MMPIPE_QUERY_MEMORY while a flow started in this
        process runs the query (its tasks read them there with `from_env`), restored afterwards."""
        saved = {k: os.environ.get(k) for k in ("MMPIPE_QUERY_TIMEOUT", "MMPIPE_QUERY_MEMORY")}
        os.environ.update(MMPIPE_QUERY_TIMEOUT=str(self.timeout_s), MMPIPE_QUERY_MEMORY=self.memory)
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def time_error(self) -> QueryLimitError:
        return QueryLimitError(f"query stopped: it ran past the time limit of {self.timeout_s:g} s "
                               "(raise it with --timeout SECONDS)")

    def memory_error(self) -> QueryLimitError:
        return QueryLimitError(f"query stopped: it needed more than the memory limit of {self.memory} "
                               "(raise it with --memory SIZE, or select fewer rows)")


def _names(con: duckdb.DuckDBPyConnection) -> tuple[set[str], set[str]]:
    """(the warehouse's tables and views, every table or view name any attached database holds)."""
    rows = con.execute(
        "SELECT lower(table_name), database_name = 'lake' AND schema_name = 'main' FROM duckdb_tables() "
        "UNION ALL SELECT lower(view_name), database_name = 'lake' AND schema_name = 'main' AND NOT internal "
        "FROM duckdb_views()").fetchall()
    return {n for n, own in rows if own}, {n for n, _ in rows}


def _lock_down(con: duckdb.DuckDBPyConnection, catalog: Catalog, limits: QueryLimits) -> None:
    data = str(catalog.data_path).replace("'", "")
    con.execute(f"SET allowed_directories = ['{data}/']")
    con.execute(f"SET memory_limit = '{max(1, limits.memory_bytes // 2**20)}MiB'")
    con.execute("SET temp_directory = ''")  # no spilling: the limit is the limit, and nothing is written
    con.execute("SET python_enable_replacements = false")  # no reading the caller's Python variables
    con.execute("SET enable_progress_bar = false")  # it writes to stdout, where a child sends its result
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def _result(result: duckdb.DuckDBPyConnection, limits: QueryLimits) -> pa.Table:
    """The result as Arrow, read in batches and refused once it outgrows the memory limit."""
    json_cols = {d[0] for d in result.description or [] if str(d[1]) == "JSON"}
    reader = result.to_arrow_reader(8192)
    batches, size = [], 0
    for batch in reader:
        size += batch.nbytes
        if size > limits.memory_bytes:
            raise limits.memory_error()
        batches.append(batch)
    table = pa.Table.from_batches(batches, schema=reader.schema)
    # JSON columns are marked so callers can show them as nested values rather than escaped strings.
    schema = pa.schema([f.with_metadata({b"json": b"1"}) if f.name in json_cols else f for f in table.schema])
    return pa.Table.from_arrays(table.columns, schema=schema)


def run_query(catalog: Catalog, query: str, params: list | None = None, snapshot: int | None = None,
              limits: QueryLimits | None = None) -> pa.Table:
    """Run a user's query in this process: confined, checked, with DuckDB's memory limit and a timer."""
    limits = limits or QueryLimits.from_env()
    try:
        con = connect(catalog, read_only=True, snapshot=snapshot)
    except duckdb.Error as e:
        raise QueryError(redact(str(e).strip())) from None
    timer = threading.Timer(limits.timeout_s, con.interrupt)
    try:
        tables, visible = _names(con)
        _lock_down(con, catalog, limits)
        statement = check_user_query(con, query, tables, visible)
        timer.start()
        return _result(con.execute(statement, params or []), limits)
    except duckdb.InterruptException:
        raise limits.time_error() from None
    except duckdb.OutOfMemoryException:
        raise limits.memory_error() from None
    except duckdb.Error as e:
        raise QueryError(redact(str(e).strip())) from None
    finally:
        timer.cancel()
        con.interrupt()
        con.close()


def _die_with_parent() -> None:
    """In the child: be killed when the parent dies (Linux), so a killed command leaves no query running."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_isolated(catalog: Catalog, query: str, params: list | None = None, snapshot: int | None = None,
                 limits: QueryLimits | None = None) -> pa.Table:
    """Run a user's query in a child process with a capped address space, killed at the time limit."""
    limits = limits or QueryLimits.from_env()
    request = json.dumps({"home": str(catalog.home), "kind": catalog.kind, "dsn": catalog.dsn, "query": query,
                          "params": params or [], "snapshot": snapshot, "limits": asdict(limits)}, default=str)
    env = {**os.environ, "MALLOC_ARENA_MAX": "2",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent.parent),
                                                       os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-m", "warehouse.user_sql"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, preexec_fn=_die_with_parent)
    try:
        # the child's own timer (started with the query) answers first; the kill, counted from the
        # child's start, is for work that does not see an interrupt, with room for a slow start-up
        out, err = proc.communicate(request.encode(), timeout=limits.timeout_s + _START_UP_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise limits.time_error() from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode == 0:
        return pa.ipc.open_stream(out).read_all()
    lines = err.decode(errors="replace").strip().splitlines()
    try:
        answer = json.loads(lines[-1])
    except (IndexError, ValueError):
        # killed by the address-space cap (MemoryError, bad_alloc abort) or by a signal
        raise limits.memory_error() from None
    from warehouse.guard import ReadOnlyError

    kinds = {"ReadOnlyError": ReadOnlyError, "QueryLimitError": QueryLimitError}
    raise kinds.get(answer["kind"], QueryError)(answer["message"])


def _child() -> int:
    """The child's side of run_isolated: request JSON on stdin, an Arrow stream on stdout."""
    import resource

    _die_with_parent()
    # the result goes out on a private copy of stdout; anything else written to fd 1 lands on stderr
    result_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    request = json.loads(sys.stdin.read())
    limits = QueryLimits(**request["limits"])
    catalog = Catalog(Path(request["home"]), request["kind"], request["dsn"])
    try:
        # capped after start-up, at what the interpreter holds now plus the query's memory and a margin
        used = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
        cap = used + limits.memory_bytes + _CHILD_OVERHEAD
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    except (OSError, ValueError):
        pass
    try:
        table = run_query(catalog, request["query"], request["params"], request["snapshot"], limits)
    except (QueryError, ValueError) as e:
        print(json.dumps({"kind": type(e).__name__, "message": str(e)}), file=sys.stderr)
        return 2
    except MemoryError:
        print(json.dumps({"kind": "QueryLimitError", "message": str(limits.memory_error())}), file=sys.stderr)
        return 2
    with result_out, pa.ipc.new_stream(result_out, table.schema) as writer:
        writer.write_table(table)
    return 0


if __name__ == "__main__":
    sys.exit(_child())
