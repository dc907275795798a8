"""Where the client finds its server and token: a flag, then SALA_URL / SALA_TOKEN, then the config
file, then the local server without a token; a broken config file is named in the error."""

from __future__ import annotations

import pytest

from client.config import DEFAULT_URL, resolve


@pytest.fixture
def config(tmp_path, monkeypatch):
    path = tmp_path / "config.toml"
    monkeypatch.setenv("SALA_CONFIG", str(path))
    monkeypatch.delenv("SALA_URL", raising=False)
    monkeypatch.delenv("SALA_TOKEN", raising=False)
    return path


def test_flags_beat_the_environment_which_beats_the_file(config, monkeypatch):
    assert resolve() == (DEFAULT_URL, None)
    config.write_text('url = "http://file:1"\ntoken = "from-file"\n')
    assert resolve() == ("http://file:1", "from-file")
    monkeypatch.setenv("SALA_URL", "http://env:2")
    assert resolve() == ("http://env:2", "from-file")
    monkeypatch.setenv("SALA_TOKEN", "from-env")
    assert resolve("http://flag:3", "from-flag") == ("http://flag:3", "from-flag")
    assert resolve() == ("http://env:2", "from-env")


@pytest.mark.parametrize("text, problem", [("url = ", "not valid TOML"), ('server = "x"', "unknown key 'server'")])
def test_a_bad_config_file_is_named(config, text, problem):
    config.write_text(text)
    with pytest.raises(ValueError, match=problem) as error:
        resolve()
    assert str(config) in str(error.value)
