"""Prefect flows: composition only. Importing this package applies mmpipe's offline Prefect settings."""

from mmpipe.home import configure_prefect

configure_prefect()
