"""`python -m upbit_cache` is `upbit-cache`."""

from upbit_cache.cli import app

app(prog_name="upbit-cache")
