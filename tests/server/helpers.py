"""Small helpers for API tests."""

from __future__ import annotations

from core.recipe import Recipe

API = "/api/v1"
BASE_LR = Recipe().optimizer.lr  # the default a recipe without an optimizer section gets

TINY_RECIPE = {
    "name": "tiny",
    "training": {"batch_size": 4, "steps_per_epoch": 2, "max_epochs": 6},
    "curriculum": {"stages": [
        {"name": "chars", "content": "characters", "success_threshold": 0.5, "min_epochs": 1,
         "max_epochs": 3, "patience": 2, "augmentation": 0.0, "lr_multiplier": 1.0},
        {"name": "combos", "content": "combinations", "success_threshold": 0.5, "min_epochs": 1,
         "max_epochs": 3, "patience": 2, "augmentation": 0.0, "lr_multiplier": 0.5},
    ]},
}


def create_run(client, name="r", recipe=None, **extra) -> dict:
    response = client.post(f"{API}/runs", json={"name": name, "recipe": recipe or TINY_RECIPE, **extra})
    assert response.status_code == 201, response.text
    return response.json()


def checkpoint_uri(client, run_id: int, name: str) -> str:
    """Where a worker writes a run's checkpoint: the run's directory in the app's store."""
    return f"{client.app.state.settings.artifacts_url}/run-{run_id}/{name}"


def error_paths(response) -> list[str]:
    return [d["path"] for d in response.json()["error"]["details"]]
