"""The server's view of recipes: parse, validate with the worker's own models, report field paths."""

from __future__ import annotations

import json
from typing import Any

import yaml
from pydantic import ValidationError

from server.errors import InvalidInput
from core.recipe import AliasRefused, Recipe, apply_patch, format_errors, load_yaml


def parse_recipe(raw: dict[str, Any] | str | None, prefix: str = "recipe") -> Recipe:
    """Accept a JSON object or YAML/JSON text; every problem is reported with its field path."""
    data = _as_mapping(raw, prefix)
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        details = format_errors(exc, prefix=(prefix,))
        summary = "; ".join(f"{d['path']}: {d['message']}" for d in details[:5])
        raise InvalidInput(f"invalid recipe: {summary}", details) from None


def patched(recipe: dict[str, Any], patch: dict[str, Any] | None) -> Recipe:
    if not patch:
        return Recipe.model_validate(recipe)
    return parse_recipe(apply_patch(recipe, patch), prefix="recipe_patch")


def _as_mapping(raw: dict[str, Any] | str | None, prefix: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if isinstance(raw, dict):
        return raw
    try:
        data = load_yaml(raw) if raw.strip() else {}
    except AliasRefused as exc:
        raise InvalidInput(f"{prefix} uses a YAML alias: aliases are not accepted in recipes",
                           [{"path": prefix, "message": str(exc)[:500]}]) from None
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{prefix} is not valid YAML or JSON",
                           [{"path": prefix, "message": str(exc)[:500]}]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidInput(f"{prefix} must be a mapping",
                           [{"path": prefix, "message": f"expected a mapping, got {type(data).__name__}"}])
    return json.loads(json.dumps(data, default=str))
