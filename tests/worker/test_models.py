import pytest
import torch

from worker.decode import greedy_decode, to_lists
from worker.losses import FocalCTCLoss, HierarchicalLoss, language_model_loss
from worker.models import CRNN, MultiTaskModel
from worker.models.heads import HierarchicalHead, LanguageModelHead, boundary_targets, compact_targets

ALL_TASKS = {
    "character_recognition",
    "confidence_prediction",
    "hierarchical_classification",
    "sequence_segmentation",
    "language_modeling",
}


def tiny_crnn(**kw) -> CRNN:
    return CRNN(channels=(8, 16, 16, 32), hidden_size=32, lstm_layers=1, **kw)


def test_crnn_shapes_and_lengths() -> None:
    model = tiny_crnn()
    features, lengths = model(torch.randn(3, 1, 32, 64), torch.tensor([64, 40, 2]))
    assert features.shape == (16, 3, 64)
    assert lengths.tolist() == [16, 10, 1]


def test_crnn_padding_does_not_reach_backward_lstm_of_short_line() -> None:
    torch.manual_seed(0)
    model = tiny_crnn().eval()
    images = torch.randn(2, 1, 32, 64)
    with torch.no_grad():
        full, _ = model(images, torch.tensor([64, 64]))
        short, _ = model(images, torch.tensor([64, 32]))
    assert torch.allclose(full[:, 0], short[:, 0], atol=1e-6)
    assert torch.all(short[8:, 1] == 0)
    assert not torch.allclose(full[:8, 1, 32:], short[:8, 1, 32:])


def test_crnn_rejects_wrong_height() -> None:
    with pytest.raises(ValueError):
        tiny_crnn()(torch.randn(1, 1, 48, 64))
    with pytest.raises(ValueError):
        CRNN(image_height=40)


def test_multitask_outputs_all_heads() -> None:
    cat = [0, 0, 0, 1, 2]
    model = MultiTaskModel(
        tiny_crnn(), 5, ALL_TASKS, num_categories=3, class_to_category=cat, modifier_categories={1, 2}
    )
    targets = torch.tensor([[1, 3, 4], [2, 0, 0]])
    out = model(torch.randn(2, 1, 32, 64), torch.tensor([64, 48]), targets)
    assert out["logits"].shape == (16, 2, 5)
    assert out["confidence_logit"].shape == (2,)
    assert out["base_logits"].shape == (16, 2, 2)
    assert out["modifier_logits"].shape == (16, 2, 3)
    assert out["combination_logits"].shape == (16, 2, 4)
    assert out["boundary_logits"].shape == (16, 2)
    assert out["lm_logits"].shape == (2, 4, 5)
    assert out["lengths"].tolist() == [16, 12]


def test_multitask_only_recognition_and_unknown_task() -> None:
    model = MultiTaskModel(tiny_crnn(), 5)
    assert set(model(torch.randn(1, 1, 32, 32))) == {"features", "lengths", "logits"}
    with pytest.raises(ValueError):
        MultiTaskModel(tiny_crnn(), 5, {"ocr"})
    with pytest.raises(ValueError):
        MultiTaskModel(tiny_crnn(), 5, {"hierarchical_classification"})


def test_level_targets_split_base_and_modifiers() -> None:
    # classes 1,2 -> category 0 (base); 3 -> category 1 (modifier); 4 -> category 2 (base)
    head = HierarchicalHead(8, 3, [0, 0, 0, 1, 2], modifier_categories={1})
    levels = head.level_targets(torch.tensor([[1, 3, 4, 3], [3, 2, 0, 0]]), torch.tensor([4, 2]))
    base, base_len = levels["base"]
    assert base_len.tolist() == [2, 1]
    assert base[0, :2].tolist() == [1, 2] and base[1, :1].tolist() == [1]
    mod, mod_len = levels["modifier"]
    assert mod_len.tolist() == [2, 1] and mod[0, :2].tolist() == [1, 1] and mod[1, 0] == 1
    comb, comb_len = levels["combination"]
    assert comb_len.tolist() == [4, 2] and comb[0].tolist() == [1, 2, 3, 2] and comb[1, :2].tolist() == [2, 1]


def test_compact_targets() -> None:
    packed, n = compact_targets(torch.tensor([[5, 6, 7]]), torch.tensor([[False, True, True]]))
    assert packed[0, :2].tolist() == [6, 7] and n.tolist() == [2]


def test_boundary_targets() -> None:
    t = boundary_targets([[0, 9], [15]], num_frames=4, downsample=4)
    assert t[:, 0].tolist() == [1, 0, 1, 0] and t[:, 1].tolist() == [0, 0, 0, 1]


def test_lm_score_matches_loss() -> None:
    torch.manual_seed(0)
    lm = LanguageModelHead(6, 8, 16).eval()
    targets = torch.tensor([[1, 2, 3]])
    nll = language_model_loss(lm(targets), targets, torch.tensor([3]), reduction="sum").detach()
    assert lm.score([1, 2, 3]) == pytest.approx(-nll.item(), abs=1e-5)
    log_p, state = lm.step(0, None)
    with torch.no_grad():
        first = lm(targets).log_softmax(-1)[0, 0, 1].item()
    assert log_p[1].item() == pytest.approx(first, abs=1e-5)


def stripe_images(labels: torch.Tensor, block: int = 16) -> torch.Tensor:
    """Each class c is a horizontal bar at rows 6c..6c+4, one 16 px block per character."""
    images = torch.zeros(len(labels), 1, 32, block * (labels.shape[1] + 1))
    for i, row in enumerate(labels.tolist()):
        for j, c in enumerate(row):
            images[i, 0, 6 * c : 6 * c + 4, j * block + 2 : (j + 1) * block - 2] = 1.0
    return images


def test_crnn_ctc_overfits_eight_lines() -> None:
    torch.manual_seed(0)
    labels = torch.randint(1, 5, (8, 3))
    images = stripe_images(labels)
    model = MultiTaskModel(tiny_crnn(dropout=0.0), 5)
    loss_fn = FocalCTCLoss(gamma=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    lengths = torch.full((8,), 3)
    for _ in range(120):
        out = model(images)
        loss = loss_fn(out["logits"], labels, out["lengths"], lengths)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        out = model(images)
    decoded, _ = greedy_decode(out["logits"], out["lengths"])
    assert decoded == to_lists(labels, lengths)


def test_hierarchical_loss_trains_through_model() -> None:
    model = MultiTaskModel(
        tiny_crnn(), 5, {"hierarchical_classification"}, num_categories=3, class_to_category=[0, 0, 0, 1, 2],
        modifier_categories={1},
    )
    targets, target_lengths = torch.tensor([[1, 3, 4]]), torch.tensor([3])
    out = model(torch.randn(1, 1, 32, 64))
    head = model.heads["hierarchical_classification"]
    loss = HierarchicalLoss()(out, head.level_targets(targets, target_lengths), out["lengths"])
    loss.backward()
    assert torch.isfinite(loss) and head.proj["modifier"].weight.grad is not None


def test_default_crnn_size() -> None:
    model = CRNN()
    features, lengths = model(torch.randn(2, 1, 32, 128))
    assert features.shape == (32, 2, 512) and model.feature_size == 512 and lengths.tolist() == [32, 32]


def test_hierarchy_without_modifiers_has_empty_modifier_level() -> None:
    head = HierarchicalHead(8, 2, [0, 0, 1])
    assert head(torch.randn(3, 1, 8))["modifier_logits"].shape == (3, 1, 1)
    _, mod_len = head.level_targets(torch.tensor([[1, 2]]), torch.tensor([2]))["modifier"]
    assert mod_len.tolist() == [0]
