"""Shared fixtures: every test gets its own data home; the bundled models load once a session."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache of derived model files (ONNX export, converted SmolLM2) for the session."""
    return tmp_path_factory.mktemp("model-cache")


# Tests generate in float32 on every machine: `dtype = "auto"` picks bf16 on CPUs that have it,
# and bf16 results depend on batch padding, which would make exact comparisons (batched vs one
# at a time, streamed vs not) machine-dependent. bf16 has its own tests.
TEST_CONFIG = '[generator]\ndtype = "float32"\n'


def store_config(backend: str, request: pytest.FixtureRequest, where: Path) -> str:
    """The `[store]` section of a test home on `backend`: nothing for SQLite; for PostgreSQL
    the session's server, with schemas of this home's own (`where` names it)."""
    if backend == "sqlite":
        return ""
    import hashlib

    server = request.getfixturevalue("postgres")
    prefix = "h" + hashlib.sha256(str(where).encode()).hexdigest()[:12]
    return (f'\n[store]\nbackend = "postgres"\ndsn = "{server.dsn}"\n'
            f'schema_prefix = "{prefix}"\n')


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked `both_stores` run once per store backend (their homes' `[store]`), but
    for those also marked `one_store` (what they test does not touch the store)."""
    definition = metafunc.definition
    if definition.get_closest_marker("both_stores") and \
            not definition.get_closest_marker("one_store") and \
            "store_backend" in metafunc.fixturenames:
        metafunc.parametrize("store_backend", ["sqlite", "postgres"])


@pytest.fixture
def store_backend() -> str:
    """The store backend of the test's home (see `pytest_generate_tests`)."""
    return "sqlite"


@pytest.fixture(autouse=True)
def ragtune_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_cache: Path,
                 store_backend: str, request: pytest.FixtureRequest) -> Path:
    """Point RAGTUNE_HOME at a fresh temp folder so no test writes outside it; the model cache
    is shared (RAGTUNE_CACHE) so the models load once per session. Its config.toml pins the
    generator to float32 (see TEST_CONFIG), and names the store backend (`both_stores`)."""
    home = tmp_path / "home"
    home.mkdir(parents=True)
    (home / "config.toml").write_text(
        TEST_CONFIG + store_config(store_backend, request, home), encoding="utf-8")
    monkeypatch.setenv("RAGTUNE_HOME", str(home))
    monkeypatch.setenv("RAGTUNE_CACHE", str(model_cache))
    return home


@pytest.fixture(scope="session")
def counter():
    """The bundled embedder's tokenizer (cheap, no torch)."""
    from ragtune.documents import load_token_counter

    return load_token_counter()


@pytest.fixture(scope="session")
def embedder(model_cache: Path):
    """The real bundled all-MiniLM-L6-v2 (with its ONNX query encoder), loaded once per session."""
    from ragtune.models import get_embedder

    emb = get_embedder("local:minilm", 16, model_cache)
    emb.warm_up()
    return emb


@pytest.fixture(scope="session")
def generator(model_cache: Path, tmp_path_factory: pytest.TempPathFactory):
    """The real bundled SmolLM2-135M-Instruct with its grounded-reader adapter, converted once
    into the session cache and loaded once; the same instance `ragtune ask` gets in-process
    (get_generator is cached)."""
    from ragtune import Settings
    from ragtune.answering import generator_for

    home = tmp_path_factory.mktemp("generator-home")
    (home / "config.toml").write_text(TEST_CONFIG, encoding="utf-8")
    gen = generator_for(Settings.load(home=home, cache=model_cache))
    gen.warm_up()
    return gen


@pytest.fixture(scope="session")
def plain_generator(model_cache: Path, tmp_path_factory: pytest.TempPathFactory):
    """The bundled SmolLM2 without the grounded-reader adapter `ask` applies by default (what
    the lab's base and rag run, and what tests of the generators themselves exercise)."""
    from ragtune import Settings
    from ragtune.answering import generator_for

    home = tmp_path_factory.mktemp("plain-generator-home")
    (home / "config.toml").write_text(TEST_CONFIG + "reader = false\n", encoding="utf-8")
    gen = generator_for(Settings.load(home=home, cache=model_cache))
    gen.warm_up()
    return gen


@pytest.fixture(scope="session")
def base_tokenizer(model_cache: Path):
    """The bundled SmolLM2's tokenizer (from the session's converted checkpoint)."""
    from ragtune.models.generators import converted_checkpoint
    from ragtune.tuning.trainer import load_tokenizer

    return load_tokenizer(converted_checkpoint(model_cache))


@pytest.fixture
def settings(ragtune_home: Path):
    from ragtune import Settings

    return Settings.load(home=ragtune_home)


SIX_DOCS = {
    "kettle.md": "# Kettle manual\n\nFill the kettle with water up to the MAX line.\n\n"
    "## Descaling\n\nDescale the kettle every month with citric acid. Rinse twice after.\n",
    "bikes.txt": "Bicycle maintenance: oil the chain every 300 kilometres. "
    "Check tyre pressure weekly; road tyres need 6 to 8 bar.",
    "garden.md": "# Garden\n\nTomatoes need full sun and deep watering twice a week.\n\n"
    "Basil grows well next to tomatoes.",
    "tea.html": "<html><head><title>Tea guide</title><script>var x=1;</script></head><body>"
    "<nav>Home | Shop</nav><main><h1>Tea guide</h1><p>Green tea steeps for two minutes at 80 "
    "degrees.</p><p>Black tea steeps for four minutes in boiling water.</p></main>"
    "<footer>Copyright</footer></body></html>",
    "astronomy.txt": "Jupiter is the largest planet of the solar system. Saturn has the most "
    "visible rings.",
    "sub/cooking.md": "# Risotto\n\nToast the arborio rice, then add warm stock one ladle at a "
    "time, stirring for eighteen minutes.",
}


@pytest.fixture
def six_docs(tmp_path: Path) -> Path:
    """A six-document corpus written in the test's temp folder."""
    root = tmp_path / "corpus"
    for name, text in SIX_DOCS.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def six_kb(six_docs: Path, settings, embedder):
    """A knowledge base of the six documents (real SQLite, real embedder)."""
    from ragtune import KnowledgeBase

    base = KnowledgeBase.open("six", settings)
    base.ingest([six_docs])
    yield base
    base.close()


CODE_PROMPT = "Which code goes with item {i}?"
CODE_ANSWER = "The code is QX-{i}."


def write_code_examples(path: Path, n: int, start: int = 0) -> Path:
    """`n` prompt/completion examples teaching a made-up answer the base model never gives."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for i in range(start, start + n):
            fh.write(json.dumps({"prompt": CODE_PROMPT.format(i=i),
                                 "completion": CODE_ANSWER.format(i=i)}) + "\n")
    return path


TINY_TUNE = {"epochs": 2, "batch_size": 4, "learning_rate": 5e-3, "lora_r": 4,
             "lora_alpha": 8, "val_split": 0.2, "min_examples": 4, "save_every": 0,
             "precision": "float32"}


@pytest.fixture(scope="session")
def tiny_adapter(tmp_path_factory: pytest.TempPathFactory, model_cache: Path):
    """A LoRA adapter trained once per session for a few steps on the real bundled model
    (20 examples, 2 epochs): the TrainResult, its data file and its progress reports."""
    from ragtune import Settings
    from ragtune.tuning import load_training_data, train_adapter

    root = tmp_path_factory.mktemp("tiny-adapter")
    data = write_code_examples(root / "codes.jsonl", 20)
    settings = Settings.load(home=root / "home", cache=model_cache, tune=TINY_TUNE)
    reports: list = []
    result = train_adapter(load_training_data(data, 4), root / "adapter", settings,
                           data_file=data, progress=reports.append)
    return result, data, reports, settings


@pytest.fixture(scope="session")
def browser():
    """One headless Debian Chromium (selenium WebDriver, tests/browser.py) for the session.
    Skipped where chromium is missing, except under CI, where that fails: `make test`
    installs it, so a missing browser there is a broken setup, not an optional part."""
    from browser import chromium, missing_browser

    if reason := missing_browser():
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    with chromium() as driver:
        yield driver


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL 16 with pgvector (pgserver) in a temp folder, for the session."""
    from ragtune.testing.postgres import temporary_postgres

    with temporary_postgres(durable=False) as server:
        yield server
