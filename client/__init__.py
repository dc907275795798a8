"""The Python client of Sala's HTTP API: one typed class, `SalaClient`, a method per endpoint.

    from client import SalaClient

    sala = SalaClient()                      # SALA_URL / SALA_TOKEN, the config file, or the local server
    run = sala.create_run({"training": {"max_epochs": 5}}, name="try")
    sala.set_lr(run.id, scale=0.5)
    for epoch in sala.epochs(run.id):
        print(epoch.epoch, epoch.metrics.get("val_cer"))

The `sala runs` commands, the worker and the tests all speak to the server through it. It imports
`core` only (the API's and the worker protocol's types), never the server or the worker.
"""

from client.api import SalaClient
from client.errors import (
    ApiError,
    Conflict,
    Forbidden,
    LeaseLost,
    Malformed,
    NotFound,
    Unauthorized,
    Unreachable,
    ValidationFailed,
)

__all__ = ["ApiError", "Conflict", "Forbidden", "LeaseLost", "Malformed", "NotFound", "SalaClient",
           "Unauthorized", "Unreachable", "ValidationFailed"]
