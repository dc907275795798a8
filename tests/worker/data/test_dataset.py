import torch

from worker.data import build_train_dataset, build_val_dataset, collate, make_loader
from worker.khmer import NUM_CATEGORIES, decode


def _same(a, b):
    return a["text"] == b["text"] and torch.equal(a["image"], b["image"]) and torch.equal(a["boundaries"], b["boundaries"])


def test_same_key_same_sample_and_epochs_differ(sources):
    for content in ("characters", "complex", "lines"):
        a = build_train_dataset(sources, content, epoch=2, seed=5, length=8, augmentation=1.0)
        b = build_train_dataset(sources, content, epoch=2, seed=5, length=8, augmentation=1.0)
        c = build_train_dataset(sources, content, epoch=3, seed=5, length=8, augmentation=1.0)
        assert all(_same(a[i], b[i]) for i in range(8))
        assert not all(_same(a[i], c[i]) for i in range(8))


def test_ranks_see_different_data(sources):
    a = build_train_dataset(sources, "words", epoch=0, seed=5, length=8, rank=0)
    b = build_train_dataset(sources, "words", epoch=0, seed=5, length=8, rank=1)
    assert [a[i]["text"] for i in range(8)] != [b[i]["text"] for i in range(8)]


def test_batch_shapes_and_targets(sources):
    ds = build_train_dataset(sources, "lines", epoch=0, seed=1, length=6, augmentation=0.5, replay=0.5,
                             replay_contents=["characters", "complex"])
    batch = collate([ds[i] for i in range(6)])
    images, widths, lengths = batch["images"], batch["widths"], batch["target_lengths"]
    assert images.shape == (6, 1, 24, int(widths.max())) and images.dtype == torch.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert batch["targets"].shape == batch["categories"].shape == (int(lengths.sum()),)
    assert 0 < int(batch["categories"].min()) and int(batch["categories"].max()) < NUM_CATEGORIES
    assert batch["labels_padded"].shape == (6, int(lengths.max()))
    offsets = torch.cumsum(lengths, 0) - lengths
    for i, text in enumerate(batch["texts"]):
        assert decode(batch["targets"][offsets[i]: offsets[i] + lengths[i]].tolist()) == text
        edges = batch["boundaries"][i]
        assert edges.sum() > 0 and edges[int(widths[i]):].sum() == 0  # non-empty, inside the sample's width
        assert images[i, :, :, int(widths[i]):].sum() == 0  # padding is background
    assert batch["has_boundaries"].all() and set(batch["difficulty"].tolist()) <= {1, 2, 3, 4, 5}


def test_loader_with_two_workers_is_deterministic(sources):
    ds = build_train_dataset(sources, "words", epoch=1, seed=9, length=16, augmentation=0.5)
    first = list(make_loader(ds, batch_size=4, workers=2))
    again = list(make_loader(ds, batch_size=4, workers=0))
    assert len(first) == 4
    for x, y in zip(first, again):
        assert x["texts"] == y["texts"] and torch.equal(x["images"], y["images"])


def test_validation_set_is_fixed_and_clean(sources):
    a = build_val_dataset(sources, "complex", seed=1, samples=5)
    b = build_val_dataset(sources, "complex", seed=1, samples=5)
    assert len(a) == 5 and all(_same(a[i], b[i]) for i in range(5))
    assert a.augmentation == 0.0
