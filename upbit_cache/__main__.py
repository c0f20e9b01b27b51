"""`python -m upbit_cache` is `upbit-cache`."""

from upbit_cache.cli import run

run()
