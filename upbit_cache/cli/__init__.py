"""The `upbit-cache` command line: parse arguments, call the library, render."""

from upbit_cache.cli.main import app

__all__ = ["app"]
