"""The study's architectures, built without downloading weights, plus their Grad-CAM layers."""

from __future__ import annotations

import timm
import torch
from torch import nn
from torchvision import models as tv_models

FAIRFACE_OUTPUTS = 18  # 7 race + 2 gender + 9 age, the official FairFace ResNet-34 head
FAIRFACE_SLICES = {"race": slice(0, 7), "gender": slice(7, 9), "age": slice(9, 18)}

_TORCHVISION = {"resnet18": tv_models.resnet18, "resnet34": tv_models.resnet34,
                "resnet50": tv_models.resnet50}

# Last convolutional stage per architecture: where Grad-CAM reads activations and gradients.
GRADCAM_LAYERS = {
    "fairface_resnet34": "layer4",
    "resnet18": "layer4",
    "resnet34": "layer4",
    "resnet50": "layer4",
    "efficientnet_b0": "conv_head",
}
# Earlier stages, deepest first, for inputs so small that the last stage is 1x1 or 2x2.
_RESNET_STAGES = ("layer4", "layer3", "layer2", "layer1")
GRADCAM_FALLBACKS = {name: _RESNET_STAGES for name in GRADCAM_LAYERS if "resnet" in name}
GRADCAM_FALLBACKS["efficientnet_b0"] = ("conv_head", "blocks.4", "blocks.2", "blocks.1")


def build_model(name: str, num_classes: int = 2) -> nn.Module:
    """A randomly initialised network of the named architecture (from scratch, as in the study)."""
    if name in _TORCHVISION:
        return _TORCHVISION[name](weights=None, num_classes=num_classes)
    if name == "fairface_resnet34":
        return tv_models.resnet34(weights=None, num_classes=num_classes)
    if name == "efficientnet_b0":
        return timm.create_model("efficientnet_b0", pretrained=False, num_classes=num_classes)
    raise ValueError(f"unknown model {name!r}; expected one of {sorted(GRADCAM_LAYERS)}")


def build_fairface_backbone() -> nn.Module:
    """torchvision ResNet-34 whose fc has FairFace's 18 outputs."""
    return tv_models.resnet34(weights=None, num_classes=FAIRFACE_OUTPUTS)


def transfer_from_backbone(backbone_state: dict[str, torch.Tensor], num_classes: int = 2) -> nn.Module:
    """Copy a FairFace backbone's convolutional weights into a fresh classifier head."""
    model = tv_models.resnet34(weights=None, num_classes=num_classes)
    features = {k: v for k, v in backbone_state.items() if not k.startswith("fc.")}
    missing, unexpected = model.load_state_dict(features, strict=False)
    if unexpected or set(missing) - {"fc.weight", "fc.bias"}:
        raise ValueError(f"backbone does not fit ResNet-34: missing={missing} unexpected={unexpected}")
    return model


def gradcam_layer(model: nn.Module, name: str) -> nn.Module:
    """The module Grad-CAM attaches to for this architecture."""
    return model.get_submodule(GRADCAM_LAYERS[name])


@torch.no_grad()
def gradcam_layer_for_size(model: nn.Module, name: str, image_size: int, min_side: int = 7) -> str:
    """Deepest stage whose feature map is at least min_side wide at this input size.

    7 is the study's own map: the last stage at 224 px. A 48 px demo image gives 2x2 there and 6x6
    one stage up, too coarse to tell a face from its background (FaceMass then ranked a face
    model below a background model on known answers), so the deepest stage at 7x7 or finer is used.
    """
    sides: dict[str, int] = {}
    hooks = [model.get_submodule(stage).register_forward_hook(
        lambda _m, _i, out, stage=stage: sides.__setitem__(stage, min(out.shape[-2:])))
        for stage in GRADCAM_FALLBACKS[name]]
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, 3, image_size, image_size, device=next(model.parameters()).device))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    for stage in GRADCAM_FALLBACKS[name]:
        if sides[stage] >= min_side:
            return stage
    return GRADCAM_FALLBACKS[name][-1]
