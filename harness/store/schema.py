"""The shape of ``result.json`` as a JSON Schema, checked whenever the store reads a record.

Two families share it: models trained here (``training`` required once ``ok``) and pretrained language
models (``family: "pretrained"``, harness/pretrained: ``model`` and ``policy`` named, ``training`` null).
A record that does not match (a key missing, a wrong type, an unknown status) is not a result:
the store skips it with a warning naming the file, and a run whose stored record is invalid is
redone. JSON Schema (validated by ``jsonschema``) rather than hand-written checks, so that each
problem comes with its path in the record and other tools can read the same schema.
"""

from __future__ import annotations

from typing import Any

import jsonschema

SCHEMA_VERSION = 1
#: statuses of a run; a "failed" run is retried when the same config runs again
RUN_STATUSES = ("ok", "oom", "diverged", "failed")
#: model families: models trained here (records before the pretrained family have no "family") and pretrained LMs
FAMILIES = ("trained", "pretrained")
NUMBER_OR_NULL = {"type": ["number", "null"]}

CELL = {
    "type": "object",
    "required": ["knobs", "metric", "higher_is_better", "status", "value", "chance"],
    "properties": {
        "knobs": {"type": "object", "required": ["context_len"]},
        "metric": {"type": "string", "minLength": 1},
        "higher_is_better": {"type": "boolean"},
        "status": {"enum": ["ok", "oom"]},
        "n": {"type": "integer", "minimum": 0},
        "value": NUMBER_OR_NULL,
        "chance": NUMBER_OR_NULL,
    },
    # a measured cell has a value and its interval; an out-of-memory one has value null and an error
    "allOf": [
        {"if": {"properties": {"status": {"const": "ok"}}},
         "then": {"required": ["n", "ci_low", "ci_high"], "properties": {"value": {"type": "number"}}}},
        {"if": {"properties": {"status": {"const": "oom"}}}, "then": {"properties": {"value": {"type": "null"}}}},
    ],
}

#: the training summary's fields that say how training ended (harness/engine/train.py); optional, as records
#: stored before them lack them
TRAINING = {
    "type": ["object", "null"],
    "properties": {
        "steps": {"type": "integer", "minimum": 0},
        "stop_reason": {"enum": ["steps", "budget", "plateau"]},
        "validation_curve": {"type": ["array", "null"],
                             "items": {"type": "object", "required": ["step", "score"]}},
        "early_stopping": {"type": ["object", "null"], "required": ["best_step", "metric", "split", "seed"]},
    },
}

RESULT = {
    "type": "object",
    "required": ["schema_version", "run_id", "mechanism", "task", "seed", "parameters", "primary_metric",
                 "provenance", "status", "error", "training", "cells"],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "run_id": {"type": "string", "minLength": 1},
        "experiment": {"type": "string"},
        "mechanism": {"type": "string", "minLength": 1},
        "task": {"type": "string", "minLength": 1},
        "seed": {"type": "integer"},
        "parameters": {"type": "integer", "minimum": 0},
        "primary_metric": {"type": "string", "minLength": 1},
        "provenance": {"type": "object"},
        "status": {"enum": list(RUN_STATUSES)},
        "error": {"type": ["string", "null"]},
        "family": {"enum": list(FAMILIES)},
        "training": TRAINING,
        "cells": {"type": "array", "items": CELL},
    },
    "allOf": [
        {"if": {"properties": {"status": {"const": "ok"}}}, "then": {"properties": {"error": {"type": "null"}}}},
        # a model trained here has its training summary; a pretrained one (family "pretrained") was not trained
        {"if": {"properties": {"status": {"const": "ok"}, "family": {"not": {"const": "pretrained"}}}},
         "then": {"properties": {"training": {"type": "object", "required": ["tokens_per_s"]}}}},
        {"if": {"properties": {"family": {"const": "pretrained"}}, "required": ["family"]},
         "then": {"required": ["model", "policy"], "properties": {"model": {"type": "string", "minLength": 1},
                                                                  "policy": {"type": "string", "minLength": 1}}}},
    ],
}

_VALIDATOR = jsonschema.Draft202012Validator(RESULT)


def record_problem(record: Any) -> str | None:
    """The first way ``record`` departs from the schema (with its path in the record), or None if it matches."""
    error = jsonschema.exceptions.best_match(_VALIDATOR.iter_errors(record))
    if error is None:
        return None
    where = "".join(f"[{part!r}]" for part in error.absolute_path)
    return f"{where or 'the record'}: {error.message}"
