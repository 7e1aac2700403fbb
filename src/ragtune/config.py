"""Settings: one pydantic model, one data home.

The data home is `$RAGTUNE_HOME` (default `~/.ragtune`). An optional `config.toml` there overrides
the defaults; an unknown key is an error that names the key. Knowledge bases live under
`<home>/kb/<name>/`.

    >>> from ragtune import Settings
    >>> s = Settings.load(home="/tmp/rt")
    >>> s.kb_path("default").name
    'default'
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ragtune.errors import ConfigError

DEFAULT_HOME = Path("~/.ragtune")
KB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ChunkingSettings(BaseModel):
    """How documents are cut into chunks. Recorded in each knowledge base when it is created."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tokens: int = Field(256, description="token budget per chunk (embedder tokenizer)")
    overlap_tokens: int = Field(32, description="tokens repeated from the previous chunk")

    @model_validator(mode="after")
    def _check(self) -> ChunkingSettings:
        if self.max_tokens < 8:
            raise ValueError(f"max_tokens must be >= 8, got {self.max_tokens}")
        if not 0 <= self.overlap_tokens < self.max_tokens // 2:
            raise ValueError(
                f"overlap_tokens must be in [0, max_tokens/2), got {self.overlap_tokens}"
            )
        return self


class EmbedderSettings(BaseModel):
    """Which embedder a knowledge base uses. `local:minilm` is the bundled all-MiniLM-L6-v2."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "local:minilm"
    batch_size: int = Field(16, gt=0)


class IngestSettings(BaseModel):
    """Limits and defaults applied while reading files."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_file_bytes: int = Field(50 * 1024 * 1024, gt=0)
    max_unzipped_bytes: int = Field(200 * 1024 * 1024, gt=0)
    exclude: tuple[str, ...] = (".*", "**/.*", "**/__pycache__/**", "**/node_modules/**")


class Settings(BaseModel):
    """Every setting ragtune reads, in one place."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    home: Path = DEFAULT_HOME
    kb: str = "default"
    chunking: ChunkingSettings = ChunkingSettings()
    embedder: EmbedderSettings = EmbedderSettings()
    ingest: IngestSettings = IngestSettings()

    @classmethod
    def load(cls, home: str | Path | None = None, **overrides: object) -> Settings:
        """Build settings from `home` (or `$RAGTUNE_HOME`), its `config.toml`, then `overrides`."""
        root = Path(home or os.environ.get("RAGTUNE_HOME") or DEFAULT_HOME).expanduser()
        data: dict[str, object] = {}
        config_file = root / "config.toml"
        if config_file.is_file():
            try:
                data = tomllib.loads(config_file.read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{config_file}: invalid TOML ({exc})") from exc
        data.update({k: v for k, v in overrides.items() if v is not None})
        data["home"] = root
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, str(config_file))) from exc

    def kb_path(self, name: str | None = None) -> Path:
        """The folder of knowledge base `name` (default: `self.kb`)."""
        name = self.kb if name is None else name
        if not KB_NAME.match(name):
            raise ConfigError(
                f"knowledge base name must be letters, digits, '_', '.', '-' (got {name!r})"
            )
        return self.home / "kb" / name


def _describe(exc: ValidationError, where: str) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "settings"
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown setting {loc!r}")
        else:
            parts.append(f"{loc}: {err['msg']}")
    return f"{where}: " + "; ".join(parts)
