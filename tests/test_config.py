"""Settings: defaults, the data home, config files, and unknown keys named."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragtune import ConfigError, Settings


def test_home_from_environment(ragtune_home: Path) -> None:
    s = Settings.load()
    assert s.home == ragtune_home
    assert s.kb_path() == ragtune_home / "kb" / "default"


def test_config_file_overrides_defaults(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('kb = "docs"\n[chunking]\nmax_tokens = 128\n')
    s = Settings.load(home=tmp_path)
    assert s.kb == "docs" and s.chunking.max_tokens == 128
    assert s.chunking.overlap_tokens == 32


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("colour = 1\n", "unknown setting 'colour'"),
        ("[ingest]\nmax_file_bytes = -5\n", "ingest.max_file_bytes"),
        ("[chunking]\nmax_tokens = 64\noverlap_tokens = 40\n", "overlap_tokens"),
        ("kb = [\n", "invalid TOML"),
    ],
)
def test_bad_config_is_an_error_naming_the_key(tmp_path: Path, toml: str, message: str) -> None:
    (tmp_path / "config.toml").write_text(toml)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        Settings.load(home=tmp_path)


@pytest.mark.parametrize("name", ["../x", "", "a/b", ".hidden", "x" * 80])
def test_kb_names_cannot_escape_the_home(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="knowledge base name"):
        Settings.load(home=tmp_path).kb_path(name)
