"""The GPU paths: Grad-CAM in strict fp32 whatever the caller set, the fed training loop, eval
batches; CUDA-only comparisons skip (with the reason) where no GPU exists."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from beauty_pipeline.explain.gradcam import explain, strict_fp32
from beauty_pipeline.settings import TrainSettings
from beauty_pipeline.training.feed import RunningTotals, batches
from beauty_pipeline.training.loop import (
    CUDA_EVAL_BATCH,
    Objective,
    eval_batch_size,
    predict_logits,
    resolve_device,
    to_input,
)
from beauty_pipeline.training.models import build_model, gradcam_layer

NO_CUDA = "no CUDA device on this machine: the CUDA-vs-CPU comparison needs one"
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
SIZE = 96


def _model_and_images(name: str = "resnet18", n: int = 4):
    torch.manual_seed(0)
    model = build_model(name).eval()
    images = torch.randn(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    return model, gradcam_layer(model, name), images


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_a_callers_autocast_does_not_reach_the_cam():
    """Inside a bf16 autocast the maps are the plain fp32 maps, bit for bit, and float32."""
    model, layer, images = _model_and_images()
    plain = explain(model, layer, images, "predicted", batch_size=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = explain(model, layer, images, "predicted", batch_size=2)
    assert under_autocast.heatmaps.dtype == np.float32
    assert plain.heatmaps.max() > 0
    np.testing.assert_array_equal(under_autocast.heatmaps, plain.heatmaps)
    np.testing.assert_array_equal(under_autocast.logits, plain.logits)


def test_bf16_would_have_changed_the_map():
    """The control for the test above: the same forward in bf16 gives other logits, so the
    equality there is the strict-fp32 path at work, not an autocast that did nothing."""
    model, _, images = _model_and_images()
    with torch.no_grad():
        exact = model(images)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            rounded = model(images).float()
    assert not torch.equal(exact, rounded)


def test_strict_fp32_restores_the_callers_tf32_flags():
    """TF32 is off inside (both cuBLAS and cuDNN) and back to the caller's choice afterwards."""
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
              torch.get_float32_matmul_precision())
    try:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        with strict_fp32(torch.device("cpu")):
            assert not torch.backends.cuda.matmul.allow_tf32
            assert not torch.backends.cudnn.allow_tf32
            assert torch.get_float32_matmul_precision() == "highest"
            assert not torch.is_autocast_enabled("cpu")
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before[:2]
        torch.set_float32_matmul_precision(before[2])


def test_cpu_feed_is_the_plain_synchronous_path():
    """On the CPU the feeder yields exactly to_input(images[index]) and the labels, in order."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (10, 8, 8, 3), dtype=np.uint8)
    targets = np.arange(10) % 2
    indices = [np.array([0, 3, 5]), np.array([1, 2]), np.array([4, 6, 7, 8, 9])]
    fed = list(batches(images, targets, indices, torch.device("cpu"),
                       lambda batch, where: to_input(batch, where)))
    assert len(fed) == 3
    for (inputs, labels), index in zip(fed, indices, strict=True):
        assert torch.equal(inputs, to_input(images[index], torch.device("cpu")))
        assert labels.tolist() == targets[index].tolist()


def test_cpu_running_totals_are_python_floats():
    """CPU epochs sum loss x n and correct counts as Python floats (the metrics stay bit-exact)."""
    totals = RunningTotals(torch.device("cpu"))
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]])
    labels = torch.tensor([0, 0, 0])
    loss = Objective().loss(logits, labels)
    totals.add(loss, logits, labels, Objective())
    assert isinstance(totals.loss, float) and totals.correct == 2.0
    assert totals.means(3) == (loss.item() * 3 / 3, 2 / 3)


def test_eval_batch_setting_and_its_defaults():
    """0 keeps the CPU's max(batch, 64); CUDA starts large; an explicit value wins everywhere."""
    assert eval_batch_size(TrainSettings(batch_size=16), torch.device("cpu")) == 64
    assert eval_batch_size(TrainSettings(batch_size=128), torch.device("cpu")) == 128
    assert eval_batch_size(TrainSettings(), torch.device("cuda")) == CUDA_EVAL_BATCH
    assert eval_batch_size(TrainSettings(eval_batch_size=7), torch.device("cuda")) == 7


def test_device_env_steers_auto(monkeypatch):
    """--device sets BEAUTY_PIPELINE_DEVICE; 'auto' (every asset's default) follows it."""
    monkeypatch.setenv("BEAUTY_PIPELINE_DEVICE", "cpu")
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setenv("BEAUTY_PIPELINE_DEVICE", "meta")
    assert resolve_device("auto") == torch.device("meta")
    assert resolve_device("cpu") == torch.device("cpu")


@needs_cuda
def test_cuda_feed_matches_the_synchronous_copy():
    """Pinned, side-stream copies give the same device tensors as a plain copy."""
    device = torch.device("cuda")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (40, 16, 16, 3), dtype=np.uint8)
    targets = np.arange(40) % 2
    indices = [np.sort(rng.permutation(40)[:k]) for k in (8, 8, 8, 8, 5)]
    fed = list(batches(images, targets, indices, device,
                       lambda batch, where: to_input(batch, where, True)))
    torch.cuda.synchronize()
    for (inputs, labels), index in zip(fed, indices, strict=True):
        assert torch.equal(inputs, to_input(images[index], device, True))
        assert labels.cpu().tolist() == targets[index].tolist()


@needs_cuda
def test_cuda_eval_logits_match_any_batch_size():
    """Large eval batches on CUDA give the CPU's argmax."""
    torch.manual_seed(0)
    model = build_model("resnet18")
    images = np.random.default_rng(0).integers(0, 255, (20, 64, 64, 3), dtype=np.uint8)
    cpu = predict_logits(model.cpu(), images, 64, torch.device("cpu"))
    cuda = predict_logits(model.cuda(), images, CUDA_EVAL_BATCH, torch.device("cuda"))
    assert (cpu.argmax(1) == cuda.argmax(1)).mean() >= 0.95


@needs_cuda
@pytest.mark.parametrize("name", ["resnet18", "resnet50", "efficientnet_b0"])
def test_cuda_heatmaps_equal_the_cpus(name):
    """The same model and images: per image r >= 0.99 between CUDA and CPU maps, even with
    the caller's TF32 and autocast on."""
    model, layer, images = _model_and_images(name, n=8)
    on_cpu = explain(model, layer, images, "predicted", batch_size=4)
    model.cuda()
    torch.backends.cudnn.allow_tf32 = True
    with torch.autocast("cuda", dtype=torch.float16):
        on_cuda = explain(model, gradcam_layer(model, name), images.cuda(),
                          torch.as_tensor(on_cpu.targets), batch_size=4)
    for mine, theirs in zip(on_cuda.heatmaps, on_cpu.heatmaps, strict=True):
        if theirs.max() > 0:
            assert _pearson(mine, theirs) >= 0.99


def test_device_flag_on_study_and_demo(tmp_path, monkeypatch):
    """--device reaches BEAUTY_PIPELINE_DEVICE (what every step's 'auto' follows); a wrong
    value is a clear error before anything runs."""
    from beauty_pipeline.cli import demo_environment, parse_args, run_demo, study_environment
    from beauty_pipeline.errors import PipelineError
    from beauty_pipeline.study_options import StudyOptions
    from beauty_pipeline.study_run import StudyPlan

    folder = str(tmp_path)
    plan = StudyPlan(StudyOptions(photos=folder, fairface=folder, home=folder, device="cuda:1"))
    assert study_environment(plan)["BEAUTY_PIPELINE_DEVICE"] == "cuda:1"
    for wrong in ("gpu", "cuda:x", "cpu "):
        with pytest.raises(PipelineError, match="--device"):
            StudyOptions(photos=folder, fairface=folder, device=wrong)
    args = parse_args(["demo", "--home", folder, "--device", "cpu"])
    assert demo_environment(args, tmp_path)["BEAUTY_PIPELINE_DEVICE"] == "cpu"
    assert parse_args(["study", "--device", "cuda"]).device == "cuda"
    monkeypatch.delenv("BEAUTY_PIPELINE_DEVICE", raising=False)
    assert run_demo(parse_args(["demo", "--home", folder, "--device", "tpu"])) == 2
    assert "BEAUTY_PIPELINE_DEVICE" not in os.environ


@needs_cuda
@pytest.mark.slow
def test_demo_partition_face_mass_and_verdict_same_on_cuda_as_on_cpu(tmp_path, monkeypatch):
    """One demo partition trained on the CPU, audited on the CPU and again on CUDA: FaceMass
    within +-0.01 per class and overall, and the same verdict."""
    from dagster import MultiPartitionKey, instance_for_test

    from beauty_pipeline.study_run import DemoPlan, full_pass, run_assets

    monkeypatch.setenv("BEAUTY_PIPELINE_DEVICE", "cpu")
    plan = DemoPlan(home=tmp_path, models=("resnet18",), backgrounds=("original",),
                    image_size=48, persons=30, photos_per_person=6, ordinary=180, epochs=6,
                    backbone_epochs=1, batch_size=16, learning_rate=1e-3)
    key = MultiPartitionKey({"model": "resnet18", "background": "original"})
    with instance_for_test() as instance:
        on_cpu = full_pass(instance, plan, log=lambda _: None).partitions["resnet18/original"]
        monkeypatch.setenv("BEAUTY_PIPELINE_DEVICE", "cuda")
        again = run_assets(instance, plan, ["gradcam", "shortcut_audit"], key)
        on_cuda = {k: again.output_for_node(k) for k in ("gradcam", "shortcut_audit")}
    for name in ("face_mass", "face_mass_celebrity", "face_mass_ordinary"):
        assert abs(on_cuda["gradcam"][name] - on_cpu["gradcam"][name]) <= 0.01, name
    assert on_cuda["shortcut_audit"]["verdict"] == on_cpu["shortcut_audit"]["verdict"]
