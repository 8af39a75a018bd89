"""`python -m mmpipe.cli`: the `mmpipe` command."""

from mmpipe.cli import app

app()
