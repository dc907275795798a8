"""Training data: stage-aware synthetic text lines, real line datasets, batching for CTC."""

from worker.data.dataset import (
    CurriculumDataset,
    DataSources,
    build_train_dataset,
    build_val_dataset,
    collate,
    make_loader,
)
from worker.data.real import DataReport, scan_folder
from worker.data.render import RaqmMissingError, Renderer
from worker.data.text import CONTENTS, TextSource

__all__ = [
    "CONTENTS", "CurriculumDataset", "DataReport", "DataSources", "RaqmMissingError", "Renderer", "TextSource",
    "build_train_dataset", "build_val_dataset", "collate", "make_loader", "scan_folder",
]
