from pathlib import Path

import pytest

from worker.data import DataSources

KHMEROS = Path("/usr/share/fonts/truetype/khmeros")


@pytest.fixture(scope="session")
def sources() -> DataSources:
    return DataSources.create(image_height=24)
