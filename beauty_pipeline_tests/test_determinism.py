"""Same seed, same result: model initialisation (also the transfer model's new head) and training
are bit-identical on the CPU."""

from __future__ import annotations

import numpy as np
import torch

from beauty_pipeline.settings import TrainSettings
from beauty_pipeline.training.loop import seeded, train
from beauty_pipeline.training.models import build_fairface_backbone, build_model, transfer_from_backbone


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(24) % 2
    images[labels == 1, :8] = 255  # something learnable
    return images, labels


def _run(name: str, seed: int, backbone: dict | None = None):
    images, labels = _data()
    seeded(seed)
    model = transfer_from_backbone(backbone) if backbone is not None else build_model(name)
    settings = TrainSettings(epochs=2, batch_size=8, learning_rate=1e-3, image_size=32, seed=seed,
                             device="cpu")
    history = train(model, images[:16], labels[:16], images[16:], labels[16:], settings,
                    val_images=images[16:20], val_targets=labels[16:20])
    return model.state_dict(), [(m.train_loss, m.test_accuracy, m.val_accuracy) for m in history]


def _identical(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_gives_bit_identical_weights_and_metrics():
    first, metrics_first = _run("resnet18", 3)
    second, metrics_second = _run("resnet18", 3)
    assert _identical(first, second)
    assert metrics_first == metrics_second
    other, _ = _run("resnet18", 4)
    assert not _identical(first, other)  # the seed is what fixes it


def test_transfer_head_is_seeded_too():
    torch.manual_seed(11)
    backbone = build_fairface_backbone().state_dict()
    seeded(5)
    head_a = transfer_from_backbone(backbone).fc.weight.clone()
    seeded(5)
    head_b = transfer_from_backbone(backbone).fc.weight.clone()
    assert torch.equal(head_a, head_b)
    first, metrics_first = _run("fairface_resnet34", 5, backbone)
    second, metrics_second = _run("fairface_resnet34", 5, backbone)
    assert _identical(first, second) and metrics_first == metrics_second


def test_a_last_batch_of_one_joins_the_one_before():
    from beauty_pipeline.training.loop import batch_bounds

    assert batch_bounds(33, 16) == [(0, 16), (16, 33)]
    assert batch_bounds(32, 16) == [(0, 16), (16, 32)]
    assert batch_bounds(17, 16) == [(0, 17)]
    assert batch_bounds(1, 16) == [(0, 1)]
