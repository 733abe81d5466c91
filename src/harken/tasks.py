"""What the audio-language tasks ask of a model: prompts, built-in schemas, schema checks.

ask, caption and analyze are chat turns with one audio part; this module holds the words and
schemas they add, so the Service and every front door share them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harken.errors import AnswerCutError, InvalidOptionError, ModelError, require

__all__ = ["CAPTION_PROMPT", "BUILTIN_SCHEMAS", "load_schema", "analyze_prompt", "parse_analysis"]

CAPTION_PROMPT = "Describe this audio in detail: the speech, sounds and music in it, and the setting."

BUILTIN_SCHEMAS: dict[str, dict[str, Any]] = {
    "tone": {
        "type": "object",
        "properties": {
            "gender": {"type": "string", "enum": ["male", "female"]},
            "primary_emotion": {
                "type": "string",
                "enum": ["neutral", "angry", "happy", "sad", "fearful", "disgusted", "surprised"],
            },
            "dominance": {"type": "string", "enum": ["submissive", "neutral", "assertive", "commanding"]},
            "confidence": {"type": "string", "enum": ["uncertain", "neutral", "confident", "overconfident"]},
        },
        "required": ["gender", "primary_emotion", "dominance", "confidence"],
        "additionalProperties": False,
    }
}


def load_schema(schema: str | Path | dict[str, Any]) -> dict[str, Any]:
    """A built-in schema name, a path to a .json file, or a schema dict; checked as JSON Schema."""
    if isinstance(schema, dict):
        value = schema
    elif str(schema) in BUILTIN_SCHEMAS:
        value = BUILTIN_SCHEMAS[str(schema)]
    else:
        path = Path(schema)
        if not path.is_file():
            names = ", ".join(BUILTIN_SCHEMAS)
            raise InvalidOptionError(f"schema {str(schema)!r} is neither a built-in ({names}) nor a file", param="schema")
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidOptionError(f"{path.name} is not valid JSON: {exc}", param="schema") from None
    check_schema(value)
    return value


def check_schema(schema: Any) -> None:
    jsonschema = require("jsonschema", "alm", "checking a JSON schema (analyze, structured output)")

    if not isinstance(schema, dict):
        raise InvalidOptionError("a JSON schema must be an object", param="schema")
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise InvalidOptionError(f"not a valid JSON Schema: {exc.message}", param="schema") from None


def analyze_prompt(schema: dict[str, Any]) -> str:
    return (
        "Listen to the audio and analyse it. Answer with one JSON object that matches this JSON Schema, "
        f"and nothing else:\n{json.dumps(schema)}"
    )


def parse_analysis(text: str, schema: dict[str, Any], finish_reason: str, max_tokens: int) -> dict[str, Any]:
    """The model's JSON, validated. Constrained decoding makes failure here mean it ran out of tokens."""
    jsonschema = require("jsonschema", "alm", "checking a JSON answer (analyze, structured output)")

    try:
        value = json.loads(text)
        jsonschema.validate(value, schema)
    except (ValueError, jsonschema.ValidationError):
        if finish_reason == "length":
            raise AnswerCutError(
                f"the answer was cut at the limit of {max_tokens} tokens before its JSON was complete; raise the "
                "limit (max_tokens over HTTP, --max-tokens on the CLI, max_new_tokens in Python)", param="max_tokens",
            ) from None
        raise ModelError("the model's answer does not match the schema") from None
    return value
