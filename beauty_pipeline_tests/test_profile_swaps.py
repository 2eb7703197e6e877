"""The audit on a small synthetic variant with two untrained models: the profile families'
own/other sets are built once per variant and read by every model; the face evidence and every
family's control cost reach the result under their fixed names."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from beauty_pipeline.data.families import FAMILIES, PROFILE_FAMILIES
from beauty_pipeline.demo.synthetic import DemoSpec
from beauty_pipeline.demo.zoo import world_dataset
from beauty_pipeline.explain.audit import TrainedModel, profile_swaps, shortcut_audit
from beauty_pipeline.storage import ImageStore
from beauty_pipeline.training.checkpoints import save_state
from beauty_pipeline.training.models import build_model


@pytest.fixture(scope="module")
def variant(tmp_path_factory):
    home = tmp_path_factory.mktemp("swaps")
    store = ImageStore(home / "images")
    spec = DemoSpec(image_size=32, persons=8, photos_per_person=4, ordinary=40, planted="border")
    manifest = world_dataset(spec, store, seed=0)
    models = []
    for seed in (1, 2):  # two different (untrained) models of the same variant
        torch.manual_seed(seed)
        weights = save_state(home / f"m{seed}.pt", build_model("resnet18").state_dict())
        models.append(TrainedModel("resnet18", (str(weights),), 32))
    return home, store, manifest, models


def test_two_models_of_one_variant_build_the_swapped_sets_once(variant):
    home, store, manifest, models = variant
    first = shortcut_audit(models[0], manifest, store, home / "cache", device="cpu")
    second = shortcut_audit(models[1], manifest, store, home / "cache", device="cpu")
    assert (first["family_sets"], second["family_sets"]) == ("built", "cached")
    assert len(list((home / "cache" / "profile_swaps").glob("*.npz"))) == 1
    assert first["class_profiles"] == second["class_profiles"]
    cached = profile_swaps(manifest, store, 32, 0, home / "cache")
    assert not cached.built and set(cached.sets) == set(PROFILE_FAMILIES)
    other_size = profile_swaps(manifest, store, 24, 0, home / "cache")
    assert other_size.built  # the image size is part of the key
    assert other_size.sets["noise"][0].shape[1:] == (24, 24, 3)


def test_every_family_reports_its_control_cost_and_the_face_evidence(variant):
    home, store, manifest, models = variant
    result = shortcut_audit(models[0], manifest, store, home / "cache", device="cpu")
    for family in FAMILIES:
        for suffix in ("_drop", "_drop_ci_low", "_drop_ci_high", "_flip", "_control_cost",
                       "_control_cost_ci_low", "_control_cost_ci_high"):
            assert np.isfinite(result[f"family_{family}{suffix}"]), family + suffix
    for name in ("face_features_drop", "face_features_control_drop"):
        for suffix in ("", "_ci_low", "_ci_high", "_celebrity", "_ordinary"):
            assert np.isfinite(result[f"{name}{suffix}"]), name + suffix
    assert np.isfinite(result["acc_person_only"])
    # the control cost is acc(original) - acc(own) and the effect acc(own) - acc(other)
    for family in PROFILE_FAMILIES:
        cost, drop = result[f"family_{family}_control_cost"], result[f"family_{family}_drop"]
        assert -1 <= cost <= 1 and -1 <= drop <= 1
    border = result["class_profiles"]
    assert border["ordinary"]["border"] > 0.05 and border["celebrity"]["border"] == 0.0
    assert result["verdict"]  # an untrained model is at chance or inconclusive, never `face`
    assert result["verdict"] != "face"
