"""`retrying` (tenacity) tries a transaction again only when it lost a race with another writer."""

from __future__ import annotations

import duckdb
import pytest

from warehouse.catalog import retrying


def _failing(errors: list[Exception]):
    calls = []

    def fn():
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return "committed"

    return fn, calls


def test_a_lost_race_is_retried_until_it_commits():
    fn, calls = _failing([duckdb.TransactionException("Transaction conflict: retry"),
                          duckdb.IOException("database is locked")])
    assert retrying(fn) == "committed" and len(calls) == 3


def test_other_errors_and_the_last_attempt_are_raised_as_they_are():
    fn, calls = _failing([duckdb.CatalogException("Table with name nope does not exist")])
    with pytest.raises(duckdb.CatalogException, match="nope"):
        retrying(fn)
    assert len(calls) == 1
    fn, calls = _failing([duckdb.IOException("database is locked")] * 5)
    with pytest.raises(duckdb.IOException, match="locked"):
        retrying(fn, attempts=3)
    assert len(calls) == 3
    fn, calls = _failing([ValueError("conflict")])  # not a DuckDB error: never retried
    with pytest.raises(ValueError):
        retrying(fn)
    assert len(calls) == 1
