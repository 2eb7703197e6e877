"""Our Captum Grad-CAM against the independent pytorch-grad-cam; no parameter gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM

from beauty_pipeline.explain.gradcam import explain, explain_predicted_and_true, gradcam
from beauty_pipeline.training.models import build_model, gradcam_layer

SIZE = 128  # layer4 / conv_head is 4x4 here: coarse enough to be cheap, fine enough to compare


def _fixed(name: str) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = build_model(name)
    images = torch.randn(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    return model, images


class _Contrastive:
    """pytorch-grad-cam target: logit(class) minus the other logit, as our scorer explains."""

    def __init__(self, category: int):
        self.category = category

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        if output.ndim == 1:
            return output[self.category] - (output.sum() - output[self.category])
        return output[:, self.category] - (output.sum(1) - output[:, self.category])


def _reference(model, layer, images, targets) -> np.ndarray:
    """pytorch-grad-cam's heatmaps (min-max normalised per image, cv2-resized)."""
    with GradCAM(model=model, target_layers=[layer]) as cam:
        return cam(input_tensor=images, targets=[_Contrastive(int(t)) for t in targets])


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0"])
@pytest.mark.parametrize("which", ["predicted", "other"])
def test_agrees_with_pytorch_grad_cam(name, which):
    model, images = _fixed(name)
    layer = gradcam_layer(model, name)
    predicted = explain(model, layer, images, "predicted", batch_size=3)
    if which == "predicted":
        ours, targets = predicted.heatmaps, predicted.targets
    else:  # the non-predicted class, as when explaining the true label of a mistake
        targets = 1 - predicted.targets
        ours = gradcam(model, layer, images, torch.as_tensor(targets), batch_size=3)
    theirs = _reference(model, layer, images, targets)
    assert ours.shape == theirs.shape == (4, SIZE, SIZE)
    lit = [i for i in range(len(ours)) if ours[i].max() > 0]
    assert lit, "all-zero heatmaps would make the comparison vacuous"
    for i in range(len(ours)):
        if i not in lit:  # the contrastive evidence for this class is nowhere positive
            assert theirs[i].max() < 1e-6
            continue
        # Pearson is invariant to pytorch-grad-cam's per-image min-max scaling, and bilinear
        # resizing commutes with it, so nothing needs undoing beyond comparing correlations.
        assert _pearson(ours[i], theirs[i]) >= 0.99


def test_no_parameter_gradients_and_state_restored():
    model, images = _fixed("resnet18")
    model.train()
    model.layer1.requires_grad_(False)  # a partly frozen model must come back partly frozen
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    result = explain(model, gradcam_layer(model, "resnet18"), images, torch.tensor([0, 1, 0, 1]))
    assert all(p.grad is None for p in model.parameters())
    assert images.grad is None and not images.requires_grad
    assert model.training and all(m.training for m in model.modules())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    model.eval()
    with torch.no_grad():
        expected = model(images).numpy()
    np.testing.assert_allclose(result.logits, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(result.targets, [0, 1, 0, 1])


def test_batching_does_not_change_heatmaps():
    model, images = _fixed("resnet18")
    layer = gradcam_layer(model, "resnet18")
    one = explain(model, layer, images, batch_size=1)
    four = explain(model, layer, images, batch_size=4)
    np.testing.assert_array_equal(one.targets, four.targets)
    np.testing.assert_allclose(one.heatmaps, four.heatmaps, rtol=1e-4, atol=1e-6)
    assert one.heatmaps.dtype == np.float32


def test_rejects_misaligned_targets():
    model, images = _fixed("resnet18")
    with pytest.raises(ValueError):
        explain(model, gradcam_layer(model, "resnet18"), images, torch.tensor([0, 1]))


def test_true_class_maps_redo_only_mistakes():
    model, images = _fixed("resnet18")
    layer = gradcam_layer(model, "resnet18")
    predicted = explain(model, layer, images)
    labels = torch.as_tensor(predicted.targets.copy())
    labels[1] = 1 - labels[1]  # one mistake
    result, true_maps = explain_predicted_and_true(model, layer, images, labels, batch_size=2)
    np.testing.assert_allclose(result.heatmaps, predicted.heatmaps, rtol=1e-4, atol=1e-6)
    direct = gradcam(model, layer, images, labels)
    np.testing.assert_allclose(true_maps, direct, rtol=1e-4, atol=1e-6)
    assert not np.allclose(true_maps[1], result.heatmaps[1])


def test_contrastive_score_is_class_minus_other():
    from beauty_pipeline.explain.gradcam import contrastive_score

    logits = torch.tensor([[2.0, -1.0], [0.5, 3.0]])
    torch.testing.assert_close(contrastive_score(logits), torch.tensor([3.0, 2.5]))
    torch.testing.assert_close(contrastive_score(logits, torch.tensor([1, 0])),
                               torch.tensor([-3.0, -2.5]))
