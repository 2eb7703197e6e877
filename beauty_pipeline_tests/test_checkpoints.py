"""FairFace checkpoints load safely into the transfer model; resume continues after a kill."""

import pickle

import numpy as np
import pytest
import torch

from beauty_pipeline.settings import TrainSettings
from beauty_pipeline.training.backbone import load_official_backbone, official_state_dict
from beauty_pipeline.training.checkpoints import CheckpointError, EpochCheckpoints
from beauty_pipeline.training.loop import train
from beauty_pipeline.training.models import (
    build_fairface_backbone,
    build_model,
    transfer_from_backbone,
)


class Payload:
    """Not a tensor: weights_only loading must refuse it."""

    def __reduce__(self):
        return (print, ("this would run on load",))


def test_fairface_format_checkpoint_loads_into_transfer_model(tmp_path):
    backbone = build_fairface_backbone()
    path = tmp_path / "res34_fair_align_multi_7_20190809.pt"
    torch.save({f"module.{k}": v for k, v in backbone.state_dict().items()}, path)
    loaded = load_official_backbone(path)
    assert torch.equal(loaded.conv1.weight, backbone.conv1.weight)
    classifier = transfer_from_backbone(official_state_dict(path))
    assert classifier.fc.out_features == 2
    assert torch.equal(classifier.layer4[0].conv1.weight, backbone.layer4[0].conv1.weight)


def test_pickled_payload_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as handle:
        pickle.dump({"fc.weight": Payload()}, handle)
    with pytest.raises(CheckpointError, match="refusing"):
        load_official_backbone(path)


def test_wrong_head_is_refused(tmp_path):
    path = tmp_path / "imagenet.pt"
    torch.save(build_model("resnet34", num_classes=1000).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"expected \(18, 512\)"):
        load_official_backbone(path)


class Killed(RuntimeError):
    pass


def test_interrupted_run_resumes_at_next_epoch(tmp_path):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (24, 16, 16, 3), dtype=np.uint8)
    labels = rng.integers(0, 2, 24)
    settings = TrainSettings(epochs=3, batch_size=8, image_size=16, device="cpu")
    checkpoints = EpochCheckpoints(tmp_path, "run-a")

    def kill_after_first(metrics):
        if metrics.epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        train(build_model("resnet18"), images, labels, images, labels, settings, checkpoints,
              kill_after_first)
    assert checkpoints.latest()["epoch"] == 1
    seen = []
    history = train(build_model("resnet18"), images, labels, images, labels, settings,
                    checkpoints, lambda m: seen.append(m.epoch))
    assert seen == [2, 3]
    assert [m.epoch for m in history] == [1, 2, 3]
    # another fingerprint (other settings or data) does not pick up these checkpoints
    assert EpochCheckpoints(tmp_path, "run-b").latest() is None
