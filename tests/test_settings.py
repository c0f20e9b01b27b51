"""One `Settings` read of the environment per cache; an argument wins without the variable
being looked at; the CLI's defaults are the library's."""

from __future__ import annotations

from pathlib import Path

import pytest

from upbit_cache import UpbitCache
from upbit_cache.errors import UsageError
from upbit_cache.settings import DEFAULT_RATE, DEFAULT_SETTLE_SECONDS, Settings


def test_the_environment_is_read_when_a_cache_is_made(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("UPBIT_CACHE_DIR", str(tmp_path / "a"))
    monkeypatch.setenv("UPBIT_SETTLE_SECONDS", "3")
    cache = UpbitCache()
    monkeypatch.setenv("UPBIT_CACHE_DIR", str(tmp_path / "b"))
    monkeypatch.setenv("UPBIT_SETTLE_SECONDS", "4")
    assert cache.files.root == str(tmp_path / "a") and cache.config.settle == 3.0
    again = UpbitCache()
    assert again.files.root == str(tmp_path / "b") and again.config.settle == 4.0


def test_an_argument_wins_and_its_variable_is_not_checked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("UPBIT_API_URL", "not a url")
    monkeypatch.setenv("UPBIT_CACHE_MEMORY", "lots")
    cache = UpbitCache(tmp_path, api_url="http://127.0.0.1:9", memory_bytes=0)
    assert cache.config.api_url == "http://127.0.0.1:9" and cache.config.rate == DEFAULT_RATE
    with pytest.raises(UsageError, match="--api-url must be a URL"):
        UpbitCache(tmp_path, memory_bytes=0)


def test_empty_variables_are_not_set() -> None:
    found = Settings.from_env({"UPBIT_SETTLE_SECONDS": "", "UPBIT_CACHE_DIR": ""})
    assert found == Settings()
    assert found.settle_seconds() == DEFAULT_SETTLE_SECONDS
    with pytest.raises(UsageError, match="UPBIT_SETTLE_SECONDS must be"):
        Settings(settle="a minute").settle_seconds()
