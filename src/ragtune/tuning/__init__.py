"""Fine-tuning: LoRA adapters trained on chat or prompt/completion data, with manifests.

    >>> from ragtune.tuning import load_training_data, train_adapter, validate_training_data
    >>> examples = load_training_data(Path("tickets.jsonl"), min_examples=8)
    >>> result = train_adapter(examples, Path("adapters/tickets"), Settings.load(),
    ...                        data_file=Path("tickets.jsonl"))
    >>> result.manifest.metrics["val_loss"]
    >>> validate_training_data(Path("tickets.jsonl"), Settings.load()).max_tokens  # no training
"""

from ragtune.tuning.data import (
    TrainingExample,
    ValidationReport,
    encode_example,
    load_training_data,
    split_examples,
    validate_training_data,
    write_training_data,
)
from ragtune.tuning.manifest import (
    AdapterManifest,
    Staleness,
    check_staleness,
    read_manifest,
    registered_adapters,
)
from ragtune.tuning.trainer import TrainProgress, TrainResult, train_adapter

__all__ = [
    "AdapterManifest",
    "Staleness",
    "TrainProgress",
    "TrainResult",
    "TrainingExample",
    "ValidationReport",
    "check_staleness",
    "encode_example",
    "load_training_data",
    "read_manifest",
    "registered_adapters",
    "split_examples",
    "train_adapter",
    "validate_training_data",
    "write_training_data",
]
