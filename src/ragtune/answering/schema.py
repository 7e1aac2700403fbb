"""Whether an answer is the JSON document a schema asks for (`ask --schema`, `rag+schema`).

The answering layer checks it when it answers (`Answer.schema_errors`); evaluation scores it
with the same function (`ragtune.evaluation.metrics` re-exports it).
"""

from __future__ import annotations

import json
import re
from typing import Any


def schema_errors(text: str, schema: dict[str, Any]) -> list[str]:
    """Why `text` is not a JSON document valid under `schema` ([] when it is). A Markdown code
    fence around the JSON is accepted; anything else around it is not."""
    import jsonschema

    body = text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, re.DOTALL)
    if fenced:
        body = fenced.group(1)
    try:
        value = json.loads(body)
    except json.JSONDecodeError as exc:
        return [f"not JSON: {exc.msg} at character {exc.pos}"]
    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(schema)
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in sorted(validator.iter_errors(value), key=lambda e: list(e.path))]
