"""Grad-CAM throughput: ours (batched, no parameter gradients) vs the study's way, same run/machine.

The study's way is pytorch-grad-cam called once per image (batch size 1), which back-propagates
through the whole network and fills every parameter's .grad. The forward-only ceiling is a batched
no-grad forward pass. Agreement: pytorch-grad-cam explains the same contrastive score as ours
(logit of the class minus the other), both in strict fp32; on CUDA, `r cpu` is the lowest per-image
correlation between our CUDA maps and our CPU maps of the same model. Usage:

    python bench/bench_gradcam.py --models resnet18 resnet50 --image-size 224 --n 32
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
from pytorch_grad_cam import GradCAM

from beauty_pipeline.explain.gradcam import explain, strict_fp32
from beauty_pipeline.training.models import build_model, gradcam_layer


class _Contrastive:
    """pytorch-grad-cam target: logit(class) minus the mean other logit, the score ours explains."""

    def __init__(self, category: int):
        self.category = category

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        chosen = output[..., self.category]
        return chosen - (output.sum(-1) - chosen) / max(1, output.shape[-1] - 1)


def _min_pearson(mine: np.ndarray, theirs: np.ndarray) -> float:
    """Lowest per-image Pearson r over the images whose map is not all zero."""
    values = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(mine, theirs, strict=True)
              if a.max() > 0 and b.max() > 0]
    return float(np.min(values)) if values else float("nan")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _interleaved(fns: dict, device: torch.device, repeat: int) -> tuple[dict, dict]:
    """Best wall time per method, methods run round-robin after a warm-up each, so a load change
    on a shared machine hits all of them rather than one."""
    results = {name: fn() for name, fn in fns.items()}
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeat):
        for name, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            results[name] = fn()
            _sync(device)
            best[name] = min(best[name], time.perf_counter() - start)
    return best, results


def bench_model(name: str, images: torch.Tensor, batch_size: int, repeat: int,
                device: torch.device) -> dict[str, float]:
    """Images per second for forward-only, ours (batched and bs=1) and pytorch-grad-cam bs=1."""
    torch.manual_seed(0)
    model = build_model(name).to(device).eval()
    layer = gradcam_layer(model, name)
    images = images.to(device)

    def forward_only():
        with torch.inference_mode():
            return torch.cat([model(images[i:i + batch_size])
                              for i in range(0, len(images), batch_size)])

    def ours():
        return explain(model, layer, images, "predicted", batch_size=batch_size).heatmaps

    def ours_bs1():
        return explain(model, layer, images, "predicted", batch_size=1).heatmaps

    with torch.inference_mode(), strict_fp32(device):
        classes = forward_only().argmax(1).tolist()

    def study():
        with GradCAM(model=model, target_layers=[layer]) as cam, strict_fp32(device):
            return np.concatenate([cam(input_tensor=images[i:i + 1],
                                       targets=[_Contrastive(classes[i])])
                                   for i in range(len(images))])

    n = len(images)
    times, results = _interleaved({"forward_only": forward_only, "ours_batched": ours,
                                   "ours_bs1": ours_bs1, "study_bs1": study}, device, repeat)
    mine, theirs = results["ours_batched"], results["study_bs1"]
    model.zero_grad(set_to_none=True)
    rates = {k: n / v for k, v in times.items()}
    rates["min_pearson_vs_study"] = _min_pearson(mine, theirs)
    rates["min_pearson_vs_cpu"] = float("nan")
    if device.type != "cpu":
        cpu_model = model.cpu()
        on_cpu = explain(cpu_model, layer, images.cpu(), "predicted", batch_size=batch_size)
        rates["min_pearson_vs_cpu"] = _min_pearson(mine, on_cpu.heatmaps)
        model.to(device)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "resnet50"])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--n", type=int, default=32, help="number of images")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    images = torch.randn(args.n, 3, args.image_size, args.image_size,
                         generator=torch.Generator().manual_seed(0))
    print(f"machine: {platform.processor() or platform.machine()}, device {device}, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"images: n={args.n}, {args.image_size}px, batch {args.batch_size}, "
          f"best of {args.repeat}")
    header = (f"{'model':<16}{'forward img/s':>14}{'ours img/s':>12}{'ours bs1':>10}"
              f"{'study img/s':>13}{'ours/study':>11}{'ours/fwd':>10}{'min r':>8}{'r cpu':>8}")
    print(header)
    for name in args.models:
        r = bench_model(name, images, args.batch_size, args.repeat, device)
        print(f"{name:<16}{r['forward_only']:>14.1f}{r['ours_batched']:>12.1f}{r['ours_bs1']:>10.1f}"
              f"{r['study_bs1']:>13.1f}{r['ours_batched'] / r['study_bs1']:>10.2f}x"
              f"{r['ours_batched'] / r['forward_only']:>10.2f}{r['min_pearson_vs_study']:>8.4f}"
              f"{r['min_pearson_vs_cpu']:>8.4f}", flush=True)


if __name__ == "__main__":
    main()
