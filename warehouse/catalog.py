"""Where the warehouse lives and how DuckDB attaches it: a DuckLake lake (Parquet data files + a catalog).

The catalog is SQLite in WAL mode under the home (one machine, many processes) or PostgreSQL (many
machines). The data path is always `<home>/lake/data/` and is given again at every attach
(OVERRIDE_DATA_PATH), so a home can be moved, copied or mounted elsewhere. DuckDB's file catalog is
not used: a second process cannot even open it read-only while a writer holds it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import util as importlib_util
from pathlib import Path
from typing import Iterable, Iterator

import duckdb
import tenacity

from warehouse.guard import without_password

LAKE_DIR = "lake"
CATALOG_FILE = "catalog.sqlite"
CONFIG_FILE = "catalog.json"
ALIAS = "lake"
_EXTENSIONS = {"ducklake": "duckdb_extension_ducklake", "sqlite_scanner": "duckdb_extension_sqlite_scanner",
               "postgres_scanner": "duckdb_extension_postgres_scanner"}


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def extension_path(name: str) -> str | None:
    """The extension file a registry package installed for this DuckDB version, or None."""
    spec = importlib_util.find_spec(_EXTENSIONS[name])
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "extensions" / f"v{duckdb.__version__}" / \
        f"{name}.duckdb_extension"
    return str(path) if path.is_file() else None


def load_extension(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """LOAD from the installed package (offline); without one, DuckDB's own INSTALL/LOAD."""
    path = extension_path(name)
    if path:
        con.execute(f"LOAD {_q(path)}")
    else:
        con.execute(f"INSTALL {name}")
        con.execute(f"LOAD {name}")


@dataclass(frozen=True)
class Catalog:
    """A home's lake: its data folder and its catalog (sqlite file, or a PostgreSQL libpq DSN)."""

    home: Path
    kind: str = "sqlite"
    dsn: str = ""

    @property
    def lake(self) -> Path:
        return self.home / LAKE_DIR

    @property
    def data_path(self) -> Path:
        return self.lake / "data"

    @property
    def uri(self) -> str:
        if self.kind == "postgres":
            return f"ducklake:postgres:{self.dsn}"
        return f"ducklake:sqlite:{self.lake / CATALOG_FILE}"

    def readable_uri(self) -> str:
        """The catalog to attach read-only. SQLite cannot open a WAL database where it may not write its
        index files, so on read-only media a private copy of the (small) catalog file is read instead."""
        if self.kind == "postgres" or os.access(self.lake, os.W_OK):
            return self.uri
        import atexit
        import shutil
        import tempfile

        copy = Path(tempfile.mkdtemp(prefix="mmpipe-catalog-"))
        atexit.register(shutil.rmtree, copy, True)
        for name in (CATALOG_FILE, CATALOG_FILE + "-wal"):
            if (self.lake / name).is_file():
                shutil.copy2(self.lake / name, copy / name)
        return f"ducklake:sqlite:{copy / CATALOG_FILE}"

    @property
    def scanner(self) -> str:
        return "postgres_scanner" if self.kind == "postgres" else "sqlite_scanner"

    def exists(self) -> bool:
        return (self.lake / CONFIG_FILE).is_file()

    def attach_sql(self, alias: str = ALIAS, read_only: bool = False, snapshot: int | None = None,
                   copy_if_read_only_media: bool = True) -> str:
        opts = [f"DATA_PATH {_q(str(self.data_path) + os.sep)}", "OVERRIDE_DATA_PATH true"]
        if self.kind == "sqlite":
            # WAL is persisted in the file once set; a reader asks for nothing that writes.
            opts += ["META_BUSY_TIMEOUT 30000"] if read_only or snapshot is not None else \
                ["META_JOURNAL_MODE 'WAL'", "META_BUSY_TIMEOUT 30000"]
        if snapshot is not None:
            opts.append(f"SNAPSHOT_VERSION {int(snapshot)}")
        if read_only or snapshot is not None:
            opts.append("READ_ONLY")
        reading = read_only or snapshot is not None
        uri = self.readable_uri() if reading and copy_if_read_only_media else self.uri
        return f"ATTACH {_q(uri)} AS {alias} ({', '.join(opts)})"


def catalog_for(home: Path, spec: str | None = None) -> Catalog:
    """The home's catalog: what it was created with (lake/catalog.json), else `spec` or $MMPIPE_CATALOG
    (`sqlite`, or `postgres:<libpq dsn>`), else sqlite."""
    config = home / LAKE_DIR / CONFIG_FILE
    if config.is_file():
        stored = json.loads(config.read_text())
        dsn = stored.get("dsn", "")
        given = (spec or os.environ.get("MMPIPE_CATALOG") or "").partition("postgres:")[2]
        if given and without_password(given) == dsn:  # the stored DSN has no password; the given one may
            dsn = given
        return Catalog(home, stored.get("kind", "sqlite"), os.environ.get("MMPIPE_CATALOG_DSN", dsn))
    spec = spec or os.environ.get("MMPIPE_CATALOG") or "sqlite"
    if spec.startswith("postgres:"):
        return Catalog(home, "postgres", spec[len("postgres:"):])
    if spec != "sqlite":
        raise ValueError(f"unknown catalog {spec!r}: use sqlite or postgres:<libpq dsn>")
    return Catalog(home)


def connect(catalog: Catalog, read_only: bool = False, snapshot: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the lake attached as `lake` (and selected with USE).

    Its memory is capped ($MMPIPE_DUCKDB_MEMORY, default 2GB: DuckDB's own default is 80% of the
    machine) and run-wide joins past it spill under the home's lake/.tmp, so a pipeline process's
    memory stays flat in the number of samples. $MMPIPE_DUCKDB_THREADS caps its threads (default: one
    per core), for machines that run several pipeline processes side by side.
    """
    config = {"autoinstall_known_extensions": False, "autoload_known_extensions": False,
              "memory_limit": os.environ.get("MMPIPE_DUCKDB_MEMORY", "2GB")}
    if os.environ.get("MMPIPE_DUCKDB_THREADS"):
        config["threads"] = int(os.environ["MMPIPE_DUCKDB_THREADS"])
    if os.access(catalog.lake, os.W_OK):
        config["temp_directory"] = str(catalog.lake / ".tmp")
    con = duckdb.connect(config=config)
    load_extension(con, "ducklake")
    load_extension(con, catalog.scanner)
    con.execute(catalog.attach_sql(read_only=read_only, snapshot=snapshot))
    con.execute(f"USE {ALIAS}")
    return con


_held = threading.local()
LOCK_STRIPES = 4096


def _stripe(key: str) -> int:
    return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) % LOCK_STRIPES


@contextmanager
def write_lock(catalog: Catalog, keys: Iterable[str] | None = None) -> Iterator[None]:
    """Serialise writers whose keys can collide, and only those.

    With `keys`, a writer holds the lake shared and each key exclusively, so writers with disjoint keys
    commit at once; without, the lake is held exclusively (schema creation, compaction, orphan deletion
    wait for every writer). A file lock per key stripe for the sqlite catalog; PostgreSQL advisory locks
    (any machine) for postgres. Re-entrant in a thread that already holds the lake exclusively.
    """
    if getattr(_held, "exclusive", False):
        yield
        return
    exclusive = keys is None
    names = sorted({f"{_stripe(k):04d}" for k in keys or ()})  # sorted: two writers never wait on each other
    try:
        _held.exclusive = exclusive
        if catalog.kind == "postgres":
            with _pg_locks(catalog, exclusive, names):
                yield
        else:
            with _file_locks(catalog, exclusive, names):
                yield
    finally:
        _held.exclusive = False


@contextmanager
def commit_lock(catalog: Catalog) -> Iterator[None]:
    """Around a whole write transaction on the SQLite catalog: SQLite takes one writer at a time and a
    DuckLake transaction holds the catalog's write lock until it commits, so writers of different keys
    would otherwise meet its busy timeout (measured: 8 writer processes). With PostgreSQL, writers of
    different keys commit at the same time; it needs none."""
    if catalog.kind != "sqlite":
        yield
        return
    with open(catalog.lake / ".commit.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextmanager
def _file_locks(catalog: Catalog, exclusive: bool, names: list[str]) -> Iterator[None]:
    locks = catalog.lake / ".locks"
    locks.mkdir(exist_ok=True)
    files = [open(catalog.lake / ".write.lock", "a")] + [open(locks / f"{n}.lock", "a") for n in names]
    try:
        fcntl.flock(files[0], fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        for f in files[1:]:
            fcntl.flock(f, fcntl.LOCK_EX)
        yield
    finally:
        for f in reversed(files):
            fcntl.flock(f, fcntl.LOCK_UN)
            f.close()


@contextmanager
def _pg_locks(catalog: Catalog, exclusive: bool, names: list[str]) -> Iterator[None]:
    import psycopg

    with psycopg.connect(catalog.dsn, autocommit=True) as pg:
        pg.execute("SELECT pg_advisory_lock(hashtext('mmpipe.warehouse'))" if exclusive else
                   "SELECT pg_advisory_lock_shared(hashtext('mmpipe.warehouse'))")
        for n in names:
            pg.execute("SELECT pg_advisory_lock(hashtext(%s))", [f"mmpipe.key.{n}"])
        try:
            yield
        finally:
            pg.execute("SELECT pg_advisory_unlock_all()")


RETRYABLE = ("database is locked", "conflict", "Failed to flush changes", "Failed to commit")


def _lost_race(e: BaseException) -> bool:
    return isinstance(e, duckdb.Error) and any(s in str(e) for s in RETRYABLE)


def retrying(fn, attempts: int = 8):
    """Run `fn()`, retrying a whole transaction that lost a race with another writer (up to `attempts`
    tries, 0.05 s doubling between them); any other error, or the last try's, is raised as it is."""
    return tenacity.Retrying(retry=tenacity.retry_if_exception(_lost_race), stop=tenacity.stop_after_attempt(attempts),
                             wait=tenacity.wait_exponential(multiplier=0.05), reraise=True)(fn)


def attach_script(catalog: Catalog) -> str:
    """SQL that opens this lake read-only from a user's own DuckDB session (same DuckDB version)."""
    lines = [f"-- DuckDB {duckdb.__version__}; paste into `duckdb` or run with duckdb.sql(...)"]
    for name in ("ducklake", catalog.scanner):
        path = extension_path(name)
        lines.append(f"LOAD {_q(path)};" if path else f"INSTALL {name}; LOAD {name};")
    catalog = Catalog(catalog.home, catalog.kind, without_password(catalog.dsn))  # printed: never a password
    lines += [catalog.attach_sql(read_only=True, copy_if_read_only_media=False) + ";", "USE lake;",
              "-- e.g. SELECT drop_reason, count(*) FROM outcomes GROUP BY 1;"]
    return "\n".join(lines)
