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
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ragtune.errors import ConfigError

DEFAULT_HOME = Path("~/.ragtune")
ADOPTABLE = ("retrieval", "answer", "chunking", "embedder")
"""The settings sections a knowledge base may record as its own (`KnowledgeBase.adopt_settings`)."""
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
    """Which embedder a knowledge base uses. `local:minilm` is the bundled all-MiniLM-L6-v2;
    `openai:MODEL` an OpenAI-compatible `/embeddings` endpoint at `base_url`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "local:minilm"
    batch_size: int = Field(16, gt=0)
    base_url: str | None = Field(None, description="for openai:MODEL embedders")
    api_key_env: str = "OPENAI_API_KEY"


class RetrievalSettings(BaseModel):
    """How the hybrid ranking fuses BM25 and dense scores, and how many passages of one
    document a prompt may hold. `ragtune tune-retrieval` chooses these on a knowledge base's
    own questions; `--apply` records them in the knowledge base, where they win over these."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fusion: str = Field("zscore", pattern="^(zscore|rrf)$", description="hybrid fusion: "
                        "zscore (weighted standardized scores) or rrf (reciprocal rank)")
    bm25_weight: float | None = Field(None, ge=0, le=1, description="BM25's share of the "
                                      "fusion, dense gets the rest (none: the fusion's default, "
                                      "0.3 for zscore as measured on SciFact train, equal for "
                                      "rrf)")
    rrf_k: float = Field(60.0, ge=0, description="rrf: the rank constant")
    per_doc: int | None = Field(None, gt=0, description="at most this many passages of one "
                                "document in a prompt (none: no limit)")


class IngestSettings(BaseModel):
    """Limits and defaults applied while reading files."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_file_bytes: int = Field(50 * 1024 * 1024, gt=0)
    max_unzipped_bytes: int = Field(200 * 1024 * 1024, gt=0)
    exclude: tuple[str, ...] = (".*", "**/.*", "**/__pycache__/**", "**/node_modules/**")


class GeneratorSettings(BaseModel):
    """Which model writes answers.

    `local:smollm2` is the bundled SmolLM2-135M-Instruct; `local:/path` any local Hugging Face
    causal-LM folder; `openai:MODEL` an OpenAI-compatible server at `base_url`, with the API key
    read from the environment variable named by `api_key_env` (never from this file).

    With the bundled model and no `adapter`, answers come from the grounded reader shipped in
    the package (`reader`; a LoRA adapter trained by `make reader` to copy short answers from
    the passages with `[n]` citations, or say "I don't know."); `reader = false` runs the plain
    model. The lab always compares against the plain model.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "local:smollm2"
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    dtype: str = Field("auto", pattern="^(auto|float32|bfloat16)$")
    adapter: Path | None = None
    reader: bool = Field(True, description="with the bundled model and no adapter: answer "
                         "with the bundled grounded-reader adapter (false: the plain model)")
    batch_size: int = Field(8, gt=0)
    max_new_tokens: int = Field(32, gt=0, description="the refusal defaults were calibrated "
                                "with 32; answers from the bundled model are short phrases")
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(3, ge=0)


class AnswerSettings(BaseModel):
    """How `ask` builds its prompt and when it refuses (see `ragtune.answering.refusal`).

    The refusal thresholds default to those calibrated on the SQuAD 2.0 sample
    (`bench/answer_squad.py`, calibration split) for the bundled generator with k=3 and at most
    32 new tokens (the defaults here; change them and recalibrate); `ragtune calibrate`
    stores a knowledge base's own, which win. `min_confidence` is a log-probability of the model
    named by `min_confidence_generator` and is not applied to other generators.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    k: int = Field(3, gt=0, description="passages retrieved for the prompt (3: as calibrated)")
    mode: str = Field("hybrid", pattern="^(bm25|dense|hybrid)$")
    context_tokens: int = Field(1024, ge=64, description="token budget of the passage blocks")
    min_similarity: float | None = 0.301
    min_confidence: float | None = -0.871
    min_confidence_generator: str = "local:smollm2"
    verify: str = Field("refuse", pattern="^(refuse|mark|off)$", description=(
        "an answer the judge ([eval] judge) cannot support: 'refuse' it (reason "
        "'unsupported'), 'mark' it verified: false, or 'off' (no verification)"))
    verify_threshold: float | None = Field(None, ge=0, le=1, description=(
        "the judge score every claim must reach; none: the judge's own (a threshold "
        "`ragtune calibrate` stored for the knowledge base wins)"))


class PriceSettings(BaseModel):
    """What one model costs, for the evaluation's cost per 1,000 queries."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_million: float = Field(0.0, ge=0, description="per million prompt tokens")
    output_per_million: float = Field(0.0, ge=0, description="per million output tokens")
    per_hour: float = Field(0.0, ge=0, description="per hour of generation wall-clock time "
                            "(a self-hosted model: what its machine costs)")


class EvalSettings(BaseModel):
    """How `ragtune eval` judges and scores (see `ragtune.evaluation`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    judge: str = Field("offline", description="'offline' (no API key), or a generator name "
                       "for an LLM judge: 'openai:MODEL' (with judge_base_url) or 'local:...'")
    judge_base_url: str | None = None
    judge_api_key_env: str = "OPENAI_API_KEY"
    correct_f1: float = Field(0.5, ge=0, le=1, description="token F1 at which an answer "
                              "counts as correct (exact match always does)")
    min_faithfulness: float = Field(0.5, ge=0, le=1, description="below this share of "
                                    "supported claims an answer fails as unfaithful")
    batch_size: int = Field(1, gt=0, description="questions generated together; 1 measures "
                            "interactive latency, more gives throughput")
    prices: dict[str, PriceSettings] = Field(
        default_factory=dict, description="generator name -> price; a generator without one "
        "has no cost figure")


class TuneSettings(BaseModel):
    """How `ragtune tune` trains a LoRA adapter (see `ragtune.tuning`). CLI flags override.

    `target_modules` names the linear layers that get adapters ("all-linear": every linear
    layer but the output head). `precision` "auto" computes in bf16 (autocast, fp32 master
    weights) where the CPU has native bf16 or a CUDA device is used, else fp32.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    base: str = Field("local:smollm2", description="local:smollm2 (bundled), or a local "
                      "Hugging Face causal-LM folder (local:PATH or PATH)")
    epochs: int = Field(3, gt=0)
    learning_rate: float = Field(1e-3, gt=0)
    batch_size: int = Field(8, gt=0)
    grad_accum: int = Field(1, gt=0, description="batches per optimizer step")
    lora_r: int = Field(8, gt=0)
    lora_alpha: int = Field(16, gt=0)
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="peft's default; 0.05 costs about "
                                "30% more time per step on a CPU (BENCHMARKS.md)")
    target_modules: tuple[str, ...] | str = "all-linear"
    max_length: int = Field(1024, ge=8, description="longest example in tokens; longer ones "
                            "are reported before training")
    val_split: float = Field(0.1, ge=0, lt=1, description="share of examples held out")
    max_val_examples: int = Field(200, ge=0)
    seed: int = 0
    patience: int = Field(2, ge=0, description="epochs without a better validation loss "
                          "before stopping (0: never stop early)")
    min_examples: int = Field(8, ge=1, description="fewer examples than this is an error")
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    save_every: int = Field(50, ge=0, description="optimizer steps between checkpoints "
                            "(0: only at the end of each epoch)")
    precision: str = Field("auto", pattern="^(auto|float32|bfloat16)$")
    raft_distractors: int = Field(3, ge=0, description="RAFT: distractor passages per example")
    raft_withhold: float = Field(0.2, ge=0, le=1, description="RAFT: share of answerable "
                                 "examples whose oracle passage is withheld (target: refusal)")
    raft_pool: int = Field(20, gt=0, description="RAFT: retrieved passages distractors are "
                           "drawn from")


class ServiceSettings(BaseModel):
    """`ragtune serve`: request limits and production traces."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    requests_per_minute: int = Field(120, gt=0, description="per API key, sustained")
    burst: int = Field(30, gt=0, description="per API key, requests allowed at once")
    max_body_bytes: int = Field(1_000_000, gt=0, description="largest JSON request body")
    max_upload_bytes: int = Field(50_000_000, gt=0, description="largest file upload request "
                                  "(each file is also limited by ingest.max_file_bytes)")
    max_batch: int = Field(8, ge=1, le=64, description="answers generated together when "
                           "requests wait for the local model at once")
    trace_sample_rate: float = Field(1.0, ge=0.0, le=1.0, description="share of answers whose "
                                     "trace is kept, with its online scores")
    trace_retention_days: float = Field(30.0, gt=0, description="traces older than this are "
                                        "deleted")
    trace_max_rows: int = Field(100_000, gt=0, description="at most this many traces per "
                                "knowledge base (the oldest go first)")
    failed_logins_per_minute: int = Field(10, gt=0, description="wrong secrets allowed per "
                                          "key id (or per client address) before 429")
    header_timeout_s: float = Field(10.0, gt=0, description="a request's headers must arrive "
                                    "within this (else the connection is closed)")
    body_timeout_s: float = Field(30.0, gt=0, description="a request's body must arrive within "
                                  "this (else 408)")


class StoreSettings(BaseModel):
    """The knowledge store's backend, by its registered name (`ragtune.store.registry`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: str = Field("sqlite", description="store backend for new knowledge bases "
                         "(sqlite: one file per knowledge base; postgres: one schema per "
                         "knowledge base in a PostgreSQL database with pgvector); a knowledge "
                         "base keeps the backend it was created or migrated to")
    dsn: str | None = Field(None, description="postgres: the connection URI "
                            "(postgresql://user@host:5432/db; env RAGTUNE_PG_DSN); keep the "
                            "password in PGPASSWORD or ~/.pgpass, not here")
    schema_prefix: str = Field("ragtune", pattern=r"^[a-z_][a-z0-9_]{0,30}$",
                               description="postgres: knowledge base NAME lives in schema "
                               "<prefix>_<name>")
    pool_size: int = Field(4, ge=1, le=100, description="postgres: connections per knowledge "
                           "base and process")
    statement_timeout_s: float = Field(30.0, gt=0, description="postgres: a statement running "
                                       "longer is cancelled (a StoreError)")
    connect_retries: int = Field(3, ge=0, le=20, description="postgres: tries after a lost "
                                 "connection before one error names the server")
    dense: Literal["process", "database"] = Field(
        "process", description="where dense ranking runs: process (exact cosine over the "
        "vectors each replica holds in memory) or database (postgres: the HNSW index; replicas "
        "hold no vectors, results are approximate; BENCHMARKS.md, \"Where ranking runs\")")
    ef_search: int = Field(100, ge=1, le=1000, description="postgres: HNSW candidate list size "
                           "for searches in the database (recall against speed; raise it as "
                           "the knowledge base grows)")
    index_build_mb: int = Field(1024, ge=64, le=65536, description="postgres: memory an HNSW "
                                "build may use (maintenance_work_mem); the build is much faster "
                                "when the graph fits, about 2 KiB per 384-dimension vector")


class Settings(BaseModel):
    """Every setting ragtune reads, in one place."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    home: Path = DEFAULT_HOME
    cache: Path | None = Field(
        None, description="derived model files (default <home>/cache; env RAGTUNE_CACHE); "
        "several homes may share one")
    kb: str = "default"
    chunking: ChunkingSettings = ChunkingSettings()
    embedder: EmbedderSettings = EmbedderSettings()
    ingest: IngestSettings = IngestSettings()
    generator: GeneratorSettings = GeneratorSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    answer: AnswerSettings = AnswerSettings()
    eval: EvalSettings = EvalSettings()
    tune: TuneSettings = TuneSettings()
    service: ServiceSettings = ServiceSettings()
    store: StoreSettings = StoreSettings()

    @classmethod
    def load(cls, home: str | Path | None = None, **overrides: object) -> Settings:
        """Build settings from `home` (or `$RAGTUNE_HOME`), its `config.toml`, then `overrides`
        (a `None` override is no override).

        Overrides merge deeply, as `with_overrides` does: `tune={"epochs": 1}` changes one
        setting and keeps the rest of the config file's `[tune]` section.
        """
        root = Path(home or os.environ.get("RAGTUNE_HOME") or DEFAULT_HOME).expanduser()
        data: dict[str, Any] = {}
        config_file = root / "config.toml"
        if config_file.is_file():
            try:
                data = tomllib.loads(config_file.read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{config_file}: invalid TOML ({exc})") from exc
        data = deep_merge(data, {k: v for k, v in overrides.items() if v is not None})
        data["home"] = root
        if "cache" not in data and os.environ.get("RAGTUNE_CACHE"):
            data["cache"] = Path(os.environ["RAGTUNE_CACHE"]).expanduser()
        if os.environ.get("RAGTUNE_PG_DSN") and not data.get("store", {}).get("dsn"):
            data["store"] = {**data.get("store", {}), "dsn": os.environ["RAGTUNE_PG_DSN"]}
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, str(config_file))) from exc

    def with_overrides(self, overrides: Mapping[str, Any]) -> Settings:
        """These settings with `overrides` merged in deeply and validated again: a section
        given as a mapping changes only the keys it names. An unknown key is a `ConfigError`
        naming it.

            >>> s = Settings.load().with_overrides({"tune": {"epochs": 1}})
            >>> s.tune.epochs, s.tune.lora_r
            (1, 8)
        """
        data = deep_merge(self.model_dump(exclude_unset=True), overrides)
        try:
            return type(self).model_validate(data)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, "settings overrides")) from exc

    def adopting(self, sections: Mapping[str, Any]) -> Settings:
        """These settings with a knowledge base's adopted sections laid over them (only the
        sections a knowledge base may adopt: retrieval, answer, chunking, embedder)."""
        unknown = set(sections) - set(ADOPTABLE)
        if unknown:
            raise ConfigError(f"a knowledge base cannot adopt settings section(s) "
                              f"{', '.join(sorted(unknown))}; only {', '.join(ADOPTABLE)}")
        return self.with_overrides(sections)

    def kb_path(self, name: str | None = None) -> Path:
        """The folder of knowledge base `name` (default: `self.kb`)."""
        name = self.kb if name is None else name
        if not KB_NAME.match(name):
            raise ConfigError(
                f"knowledge base name must be letters, digits, '_', '.', '-' (got {name!r})"
            )
        return self.home / "kb" / name

    @property
    def cache_dir(self) -> Path:
        """Derived model artifacts (ONNX export, converted checkpoints) live here."""
        return self.cache or self.home / "cache"


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` laid over it: where both hold a mapping under a key the two
    merge (recursively), anything else in `overrides` replaces what `base` holds."""
    merged = dict(base)
    for key, value in overrides.items():
        current = merged.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = value
    return merged


def _describe(exc: ValidationError, where: str) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "settings"
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown setting {loc!r}")
        else:
            parts.append(f"{loc}: {err['msg']}")
    return f"{where}: " + "; ".join(parts)
