"""Where the data dir is, when nobody says: a light module (the CLI imports it at start)."""

from __future__ import annotations

import os

import platformdirs

ENV_DATA_DIR = "UPBIT_CACHE_DIR"


def default_data_dir() -> str:
    """UPBIT_CACHE_DIR if set, else the user data dir (e.g. ~/.local/share/upbit-cache)."""
    return os.environ.get(ENV_DATA_DIR) or platformdirs.user_data_dir("upbit-cache")
