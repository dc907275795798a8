"""Training data: stage-aware synthetic text lines, real line datasets, batching for CTC.

Names load lazily (PEP 562) so that `sala` commands which never touch data do not import torch."""

from importlib import import_module

_HOMES = {
    "CurriculumDataset": "dataset", "DataSources": "dataset", "build_train_dataset": "dataset",
    "build_val_dataset": "dataset", "collate": "dataset", "make_loader": "dataset",
    "DataReport": "real", "scan_folder": "real", "RaqmMissingError": "render", "Renderer": "render",
    "CONTENTS": "text", "TextSource": "text",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'worker.data' has no attribute {name!r}")
    return getattr(import_module(f"worker.data.{_HOMES[name]}"), name)
