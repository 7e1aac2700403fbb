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


def test_overrides_merge_deeply_and_keep_untouched_keys(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[tune]\nepochs = 5\nlora_r = 4\n'
                                          '[generator]\ndtype = "float32"\n')
    loaded = Settings.load(home=tmp_path)
    s = loaded.with_overrides({"tune": {"epochs": 1}, "answer": {"k": 5}})
    assert (s.tune.epochs, s.tune.lora_r) == (1, 4)  # the file's other [tune] key is kept
    assert s.answer.k == 5 and s.answer.mode == "hybrid"  # defaults beside an override stay
    assert s.generator == loaded.generator and s.home == tmp_path
    assert loaded.tune.epochs == 5  # the original is untouched (settings are frozen)
    # load(**overrides) merges the same way
    assert Settings.load(home=tmp_path, tune={"epochs": 1}).tune == s.tune


def test_override_replaces_a_non_mapping_value(tmp_path: Path) -> None:
    s = Settings.load(home=tmp_path).with_overrides({"tune": {"target_modules": ("q_proj",)},
                                                     "home": tmp_path / "other"})
    assert s.tune.target_modules == ("q_proj",) and s.kb_path("x") == tmp_path / "other/kb/x"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"tune": {"epoch": 1}}, "unknown setting 'tune.epoch'"),
        ({"colour": "red"}, "unknown setting 'colour'"),
        ({"tune": {"epochs": 0}}, "tune.epochs"),
    ],
)
def test_bad_override_is_an_error_naming_the_key(tmp_path: Path, overrides: dict,
                                                 message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.load(home=tmp_path).with_overrides(overrides)
