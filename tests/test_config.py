"""The config file: where it is, what it may say, how it ranks (flags > environment > file >
defaults) in the CLI and the library, and one clear line (exit 2) for every kind of bad file."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import FAST_RATE, candle_requests, plain
from typer.testing import CliRunner

from upbit_cache import UpbitCache
from upbit_cache.cli import app
from upbit_cache.configfile import default_path, load
from upbit_cache.errors import ConfigError
from upbit_cache.settings import DEFAULT_RATE, Settings
from upbit_cache.simulator import SimulatorServer

runner = CliRunner()
DEAD = "http://127.0.0.1:9"  # nothing listens: a run that used it would fail


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, plain(result.stderr)


def effective(*args: str, env: dict[str, str] | None = None) -> dict[str, dict[str, object]]:
    code, out, err = invoke("config", "--json", *args, env=env)
    assert code == 0, err
    settings: dict[str, dict[str, object]] = json.loads(out)["settings"]
    return settings


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A config dir of the test's own (the default place), with no file in it yet."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for name in ("UPBIT_CACHE_CONFIG", "UPBIT_CACHE_DIR", "UPBIT_API_URL", "UPBIT_WS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("UPBIT_CACHE_MEMORY", raising=False)
    return tmp_path / "xdg" / "upbit-cache" / "config.toml"


def test_the_suite_never_reads_the_developers_config() -> None:
    # conftest points the default place at an empty folder of the session's.
    assert "UPBIT_CACHE_CONFIG" not in os.environ
    assert default_path().startswith(os.environ["XDG_CONFIG_HOME"])
    assert not Path(default_path()).exists()
    assert load().file is None


def test_with_no_file_everything_is_a_default_and_path_says_where(home: Path) -> None:
    code, out, _ = invoke("config", "--path")
    assert code == 0 and out == f"{home}\n"
    code, out, _ = invoke("config")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"config file: {home} (the default place; not there)"
    assert all(line.split()[-1] == "default" for line in lines[1:]), out
    found = effective()
    assert found["rate"] == {"value": DEFAULT_RATE, "source": "default", "origin": None}
    assert found["markets"]["value"] == "KRW" and found["tz"]["value"] == "UTC"
    assert found["serve.port"]["value"] == 8124 and found["serve.host"]["value"] == "127.0.0.1"


FULL = """
data_dir = "{data}"
api_url = "{api}"
rate = 50
markets = ["KRW-BTC", "krw-eth"]
timeframes = ["15m", "1h"]
days = 2
tz = "KST"
memory = "256M"

[serve]
host = "0.0.0.0"
port = 9000
keep = "KRW"
keep_timeframes = "1m,1h"
"""


def test_each_key_ranks_flag_then_environment_then_file_then_default(
    home: Path, tmp_path: Path
) -> None:
    write(home, FULL.format(data=tmp_path / "file-data", api=DEAD))
    found = effective()
    assert found["data_dir"] == {
        "value": str(tmp_path / "file-data"),
        "source": "config",
        "origin": str(home),
    }
    assert found["markets"]["value"] == ["KRW-BTC", "KRW-ETH"]
    assert found["timeframes"]["value"] == ["15m", "1h"]
    assert found["tz"]["value"] == "Asia/Seoul" and found["days"]["value"] == 2.0
    assert found["memory"]["value"] == "256M" and found["ws_url"]["source"] == "default"
    assert found["serve.keep"]["value"] == "KRW"
    assert found["serve.keep_timeframes"]["value"] == ["1m", "1h"]
    assert (found["serve.host"]["value"], found["serve.port"]["value"]) == ("0.0.0.0", 9000)

    env = {
        "UPBIT_CACHE_DIR": str(tmp_path / "env-data"),
        "UPBIT_API_URL": "http://127.0.0.1:8",
        "UPBIT_CACHE_MEMORY": "1G",
    }
    found = effective(env=env)
    assert found["data_dir"]["value"] == str(tmp_path / "env-data")
    assert found["data_dir"]["source"] == "environment"
    assert found["data_dir"]["origin"] == "UPBIT_CACHE_DIR"
    assert found["api_url"]["value"] == "http://127.0.0.1:8"
    assert found["memory"]["value"] == "1G" and found["memory"]["origin"] == "UPBIT_CACHE_MEMORY"
    assert found["rate"]["source"] == "config"  # no variable sets it

    flags = ["--data-dir", str(tmp_path / "flag-data"), "--api-url", "http://127.0.0.1:7"]
    found = effective(*flags, "--rate", "3", env=env)
    assert found["data_dir"] == {
        "value": str(tmp_path / "flag-data"),
        "source": "flag",
        "origin": "--data-dir",
    }
    assert (
        found["api_url"]["source"] == "flag" and found["api_url"]["value"] == "http://127.0.0.1:7"
    )
    assert found["rate"] == {"value": 3.0, "source": "flag", "origin": "--rate"}
    assert found["tz"]["source"] == "config"
    # --data-dir before the command is a flag too.
    code, out, _ = invoke("--data-dir", str(tmp_path / "early"), "config", "--json", env=env)
    assert code == 0
    assert json.loads(out)["settings"]["data_dir"]["source"] == "flag"


def test_the_text_output_names_each_source(home: Path, tmp_path: Path) -> None:
    write(home, 'rate = 5\ntz = "Asia/Seoul"\n')
    code, out, _ = invoke("config", "--rate", "7", env={"UPBIT_CACHE_DIR": str(tmp_path)})
    assert code == 0
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:]}
    assert out.splitlines()[0] == f"config file: {home} (the default place; read)"
    assert rows["rate"] == ["7", "flag", "--rate"]
    assert rows["data_dir"] == [str(tmp_path), "environment", "UPBIT_CACHE_DIR"]
    assert rows["tz"] == ["Asia/Seoul", "config", "file"]
    assert rows["days"] == ["30", "default"]


def test_a_named_file_wins_over_the_variable_and_the_default_place(
    home: Path, tmp_path: Path
) -> None:
    write(home, "rate = 1\n")
    by_env = write(tmp_path / "env.toml", "rate = 2\n")
    named = write(tmp_path / "named.toml", "rate = 3\n")
    env = {"UPBIT_CACHE_CONFIG": str(by_env)}
    assert effective()["rate"]["value"] == 1.0
    assert effective(env=env)["rate"]["value"] == 2.0
    assert effective("--config", str(named), env=env)["rate"]["value"] == 3.0
    code, out, _ = invoke("--config", str(named), "config", "--json", env=env)
    document = json.loads(out)
    assert document["config_file"] == {
        "path": str(named),
        "found": True,
        "source": "flag",
        "origin": "--config",
    }
    assert document["settings"]["rate"]["value"] == 3.0
    code, out, _ = invoke("config", "--path", env=env)
    assert (code, out) == (0, f"{by_env}\n")


def test_a_named_file_must_be_there_the_default_one_need_not(home: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    for args, env in (
        (["--config", str(missing), "info"], None),
        (["info", "--config", str(missing)], None),
        (["info"], {"UPBIT_CACHE_CONFIG": str(missing)}),
    ):
        code, out, err = invoke(*args, env=env)
        assert (code, out) == (2, ""), err
        assert err == f"upbit-cache: error: config {missing}: no such file\n"
    (tmp_path / "data").mkdir()
    code, out, err = invoke("info", "--data-dir", str(tmp_path / "data"))
    assert code == 0 and "is empty" in out, err


BAD = [
    ("rate = 10\nrate = 11\n", "not valid TOML: Cannot overwrite a value (at line 2, column 10)"),
    ("rate = \n", "not valid TOML: Invalid value (at line 1, column 8)"),
    ("data-dir = '/x'\n", "unknown key data-dir (did you mean data_dir?)"),
    ("timeframe = '1h'\n", "unknown key timeframe (did you mean timeframes?)"),
    ("[serve]\nhots = 'x'\n", "unknown key serve.hots (did you mean serve.host?)"),
    ("rate = -1\n", "rate: must be from 0.1 to 1000 requests a second, not -1"),
    ("rate = '10'\n", "rate: must be a number of requests a second, not a string ('10')"),
    ("days = 0\n", "days: must be from 0.01 to 36500 days, not 0"),
    ("markets = ['KRW-BTC', 'BTC-KRW']\n", "markets: invalid market code 'BTC-KRW': did you mean"),
    ("markets = 'EUR'\n", 'markets: must be an array of markets such as ["KRW-BTC"] or a quote'),
    ("markets = 'KRW-BTC'\n", "markets: give markets as an array: ['KRW-BTC']"),
    ("markets = []\n", "markets: is an empty array"),
    ("timeframes = ['1h', '7x']\n", "timeframes: unsupported timeframe '7x'"),
    ("timeframes = 60\n", 'timeframes: must be an array of timeframes such as ["1h"], not an'),
    ("tz = 'Seoul'\n", "tz: unknown time zone 'Seoul': did you mean Asia/Seoul?"),
    ("memory = 'lots'\n", "memory: 'lots' is not a size such as 512M or 2G"),
    ("api_url = 'ftp://x'\n", "api_url: must be a URL such as https://api.upbit.com"),
    ("ws_url = 'http://x'\n", "ws_url: must be a URL such as wss://"),
    ("data_dir = ''\n", "data_dir: is empty"),
    ("serve = 3\n", "serve: must be a table ([serve]), not an integer (3)"),
    ("[serve]\nport = 70000\n", "serve.port: must be a port from 1 to 65535, not 70000"),
    ("[serve]\nport = '8124'\n", "serve.port: must be a port number (an integer), not a string"),
    ("[serve]\nkeep = ['KRW-BTC', 'nope']\n", "serve.keep: invalid market code 'nope'"),
    ("[serve]\nkeep_timeframes = ['1h', '']\n", "serve.keep_timeframes: empty timeframe"),
]


@pytest.mark.parametrize(("body", "why"), BAD)
def test_a_bad_file_is_one_line_naming_it_and_the_key(
    home: Path, tmp_path: Path, body: str, why: str
) -> None:
    bad = write(tmp_path / "bad.toml", body)
    for args in (["--config", str(bad), "config"], ["fetch", "KRW-BTC", "--config", str(bad)]):
        code, out, err = invoke(*args, "--api-url", DEAD)
        assert (code, out) == (2, ""), err
        assert err.startswith(f"upbit-cache: error: config {bad}: {why}"), err
        assert err.count("\n") == 1
    with pytest.raises(ConfigError, match=r"^config "):
        UpbitCache(config=bad)


def test_bad_bytes_and_a_folder_are_one_line_too(home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b"tz = '\xe9'\n")
    code, _, err = invoke("--config", str(bad), "config")
    assert code == 2 and err == f"upbit-cache: error: config {bad}: not UTF-8 text\n"
    code, _, err = invoke("--config", str(tmp_path), "config")
    assert code == 2 and "is a directory" in err and err.count("\n") == 1


def test_the_entry_point_says_one_line_for_a_bad_file_read_while_parsing(tmp_path: Path) -> None:
    # `info` reads the file for --tz's default while its options are parsed: still one line.
    bad = write(tmp_path / "bad.toml", "tz = 'Mars/Base'\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPBIT_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    done = subprocess.run(
        [str(Path(sys.executable).parent / "upbit-cache"), "--config", str(bad), "info"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert plain(done.stderr) == (
        f"upbit-cache: error: config {bad}: tz: unknown time zone 'Mars/Base': use UTC or a "
        "name such as Asia/Seoul\n"
    )


def test_commands_take_their_defaults_from_the_file(
    sim: SimulatorServer, home: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    write(
        home,
        f'data_dir = "{data}"\napi_url = "{sim.url}"\nrate = {FAST_RATE}\n'
        'markets = ["KRW-BTC", "KRW-ETH"]\ntimeframes = ["1h", "4h"]\ndays = 2\ntz = "KST"\n',
    )
    code, out, err = invoke("fetch")
    assert code == 0, err
    # Two markets, 2 days of 1h (48 each) and 4h derived from it: the file's choices.
    assert out.startswith("2 markets, 96 candles written, "), out
    assert "derived 4h" in out
    assert (data / "candles" / "timeframe=1h").is_dir()
    # show: the file's first timeframe, its zone; nothing more asked of Upbit.
    asked = candle_requests(sim)
    code, out, err = invoke("show", "KRW-BTC", "-n", "3")
    assert code == 0, err
    rows = pd.read_csv(io.StringIO(out))
    assert set(rows["timeframe"]) == {"1h"} and rows["time"].iloc[-1].endswith("+09:00")
    assert candle_requests(sim) == asked
    # A flag beats the file: another data dir, another zone.
    code, out, err = invoke("show", "KRW-BTC", "-n", "1", "--tz", "UTC", "--no-refresh")
    assert code == 0 and pd.read_csv(io.StringIO(out))["time"].iloc[0].endswith("Z")
    (tmp_path / "other").mkdir()
    code, out, err = invoke("info", "--data-dir", str(tmp_path / "other"))
    assert code == 0 and "is empty" in out, err


def test_the_environment_beats_the_file_and_a_flag_beats_both(
    sim: SimulatorServer, home: Path, tmp_path: Path
) -> None:
    write(home, f'api_url = "{DEAD}"\nrate = {FAST_RATE}\n')
    args = ["fetch", "KRW-BTC", "--days", "1", "--data-dir", str(tmp_path / "a")]
    code, _, err = invoke(*args, env={"UPBIT_API_URL": sim.url})
    assert code == 0, err
    args = ["fetch", "KRW-BTC", "--days", "1", "--data-dir", str(tmp_path / "b")]
    code, _, err = invoke(*args, "--api-url", sim.url, env={"UPBIT_API_URL": DEAD})
    assert code == 0, err


def test_markets_may_be_a_quote(sim: SimulatorServer, home: Path, tmp_path: Path) -> None:
    write(home, f'api_url = "{sim.url}"\nrate = {FAST_RATE}\nmarkets = "BTC"\n')
    data = tmp_path / "data"
    code, out, err = invoke("fetch", "-t", "1d", "--days", "2", "--data-dir", str(data), "-v")
    assert code == 0, err
    named = {line.split()[0] for line in err.splitlines() if line.split()[1:2] == ["1d:"]}
    assert named and all(m.startswith("BTC-") for m in named), err
    # Markets given beat the file's.
    code, out, err = invoke("fetch", "KRW-BTC", "-t", "1d", "--days", "2", "--data-dir", str(data))
    assert code == 0 and out.startswith("1 market, "), out


def test_the_library_reads_the_file_too(home: Path, tmp_path: Path) -> None:
    write(home, FULL.format(data=tmp_path / "file-data", api=DEAD))
    cache = UpbitCache()
    assert cache.files.root == str(tmp_path / "file-data")
    assert (cache.config.api_url, cache.config.rate) == (DEAD, 50.0)
    assert cache.config.ws_url == "ws://127.0.0.1:9/websocket/v1"  # beside the file's api_url
    assert cache.memory.budget.fixed == 256 * 2**20
    # Arguments win; config=False reads no file; config=FILE reads that one.
    cache = UpbitCache(tmp_path / "arg", api_url="http://127.0.0.1:8", rate=2, memory_bytes=0)
    assert (cache.files.root, cache.config.rate) == (str(tmp_path / "arg"), 2.0)
    assert UpbitCache(tmp_path, config=False).config.api_url == "https://api.upbit.com"
    other = write(tmp_path / "other.toml", "rate = 4\n")
    assert UpbitCache(tmp_path, config=other).config.rate == 4.0
    assert UpbitCache(tmp_path, config=str(other)).settings.rate() == 4.0


def test_the_environment_beats_the_file_in_the_library(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(home, FULL.format(data=tmp_path / "file-data", api=DEAD))
    monkeypatch.setenv("UPBIT_CACHE_DIR", str(tmp_path / "env-data"))
    monkeypatch.setenv("UPBIT_API_URL", "http://127.0.0.1:8")
    monkeypatch.setenv("UPBIT_CACHE_MEMORY", "0")
    cache = UpbitCache()
    assert cache.files.root == str(tmp_path / "env-data")
    assert cache.config.api_url == "http://127.0.0.1:8" and cache.memory.budget.fixed == 0


def test_serves_settings_for_the_serve_command(home: Path, tmp_path: Path) -> None:
    defaults = load()
    assert (defaults.serve_host(), defaults.serve_port()) == ("127.0.0.1", 8124)
    assert defaults.serve_keep() == ((), None) and defaults.serve_keep_timeframes() == "1h"
    write(home, FULL.format(data=tmp_path, api=DEAD))
    found = load()
    assert (found.serve_host(), found.serve_port()) == ("0.0.0.0", 9000)
    assert found.serve_keep() == ((), "KRW") and found.serve_keep_timeframes() == "1m,1h"
    listed = write(tmp_path / "k.toml", '[serve]\nkeep = ["krw-btc"]\n')
    assert load(listed).serve_keep() == (("KRW-BTC",), None)
    # keep_timeframes left out: the timeframes setting.
    assert load(write(tmp_path / "t.toml", "timeframes = '15m'\n")).serve_keep_timeframes() == "15m"


def test_data_dir_in_the_file_is_relative_to_it_and_expands_home(tmp_path: Path) -> None:
    here = write(tmp_path / "conf" / "c.toml", 'data_dir = "store"\n')
    assert load(here).default_data_dir() == str(tmp_path / "conf" / "store")
    home_relative = write(tmp_path / "h.toml", 'data_dir = "~/upbit"\n')
    assert load(home_relative).default_data_dir() == os.path.expanduser("~/upbit")
    uri = write(tmp_path / "s3.toml", 'data_dir = "s3://bucket/upbit"\n')
    assert load(uri).default_data_dir() == "s3://bucket/upbit"


def test_settings_from_env_still_reads_no_file(home: Path) -> None:
    write(home, "rate = 5\n")
    assert Settings.from_env().file is None and Settings.from_env().rate() == DEFAULT_RATE
    assert load().rate() == 5.0 and load(False).file is None


def test_verbose_adds_what_only_the_environment_sets(home: Path) -> None:
    code, out, _ = invoke("config", "-v", env={"UPBIT_SECONDS_HORIZON_DAYS": "30"})
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:]}
    assert code == 0
    assert rows["seconds_horizon_days"] == ["30", "environment", "UPBIT_SECONDS_HORIZON_DAYS"]
    assert rows["settle_seconds"] == ["0", "environment", "UPBIT_SETTLE_SECONDS"]  # conftest's
    assert "settle_seconds" not in invoke("config")[1]
