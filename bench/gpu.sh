#!/usr/bin/env bash
# The GPU check: our training loop vs the study's loader and vs the compute ceiling (at the study's
# batch 32 and at a batch that fills the GPU, with GPU busy %), then Grad-CAM speed and agreement
# (with pytorch-grad-cam, and CUDA vs CPU). Needs no ../shared: without it (or with
# BEAUTY_PIPELINE_BENCH_SYNTHETIC=1) the images are synthetic demo faces.
# Usage on a machine with a GPU: bash bench/gpu.sh  (about 3 minutes on one modern GPU).
# Without CUDA it runs the same scripts on the CPU at tiny sizes (the CUDA-only parts skipped);
# BENCH_MODELS / BENCH_SIZE / BENCH_N / BENCH_REPEAT override the sizes either way.
set -euo pipefail
cd "$(dirname "$0")/.."
if python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  python -c "import torch; print('device:', torch.cuda.get_device_name(0), 'torch', torch.__version__)"
  DEVICE=cuda; N=${BENCH_N:-512}; SIZE=${BENCH_SIZE:-224}; REPEAT=${BENCH_REPEAT:-3}
  MODELS=${BENCH_MODELS:-resnet18 resnet34 resnet50 efficientnet_b0}; CAM_N=256
  CAM_MODELS=${BENCH_MODELS:-resnet18 resnet50}
else
  echo "device: none (no CUDA): CPU run at tiny sizes, CUDA-only parts skipped"
  DEVICE=cpu; N=${BENCH_N:-32}; SIZE=${BENCH_SIZE:-48}; REPEAT=${BENCH_REPEAT:-1}
  MODELS=${BENCH_MODELS:-resnet18}; CAM_N=$N; CAM_MODELS=$MODELS
fi
echo "== training: ours vs the study's loader vs the ceiling (tensors already on the device)"
# shellcheck disable=SC2086
python bench/bench_training.py --device "$DEVICE" --models $MODELS --image-size "$SIZE" --n "$N" \
  --batch-size 32 --large-batch "${BENCH_LARGE_BATCH:-256}" --repeat "$REPEAT"
echo "== Grad-CAM: ours vs pytorch-grad-cam (r) and CUDA vs CPU (r cpu)"
# shellcheck disable=SC2086
python bench/bench_gradcam.py --device "$DEVICE" --models $CAM_MODELS --image-size "$SIZE" \
  --n "$CAM_N" --repeat "$REPEAT"
echo "== done"
