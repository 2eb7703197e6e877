#!/usr/bin/env bash
# One short GPU check: training loop (AMP, channels_last) vs the study's loader, and Grad-CAM, on CUDA.
# Usage on a machine with a GPU: bash bench/gpu.sh  (about 3 minutes on one modern GPU)
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
python bench/bench_training.py --device cuda --models resnet18 resnet34 resnet50 efficientnet_b0 \
  --image-size 224 --n 512 --batch-size 32 --repeat 3
python bench/bench_gradcam.py --device cuda --models resnet18 resnet50 --image-size 224 --n 256 --repeat 3
