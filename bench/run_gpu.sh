#!/usr/bin/env bash
# The GPU checks and benchmarks of the auto strategy's CUDA path (open_clip ViT-B-32 with
# random weights, which cost the same as pretrained ones), in one go, as run on the lent
# H100. Needs a CUDA machine with torch + torchvision; open_clip and the app's
# dependencies either installed or carried as wheels (WHEELS=dir installs them first).
#
#   bench/run_gpu.sh OUT_DIR          # PYTHON=python3 by default
#
# Writes to OUT_DIR: nvidia-smi.txt, gpu-tests.log, auto-gpu-strategy.{json,md} (strategy
# level, batching on/off, with the CPU/GPU time split) and auto-gpu-http*.{json,md} (over
# loopback HTTP: one 640x480 JPEG per request and text only, p50 at c=1, decisions/s at
# c=64, one and several ROUTER_WORKERS on the one GPU).
set -u
out=${1:?usage: bench/run_gpu.sh OUT_DIR}
py=${PYTHON:-python3}
mkdir -p "$out"
if [ -n "${WHEELS:-}" ]; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/llm-router-site "$WHEELS"/*.whl || exit 1
  export PYTHONPATH=/tmp/llm-router-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/nvidia-smi.txt"
"$py" -c 'import torch, torchvision, open_clip; print("torch", torch.__version__,
  "torchvision", torchvision.__version__, "open_clip", open_clip.__version__,
  "cuda", torch.cuda.is_available())' | tee -a "$out/nvidia-smi.txt"
status=0
timeout 150 "$py" -m pytest -m "clip and gpu" tests/gpu -p no:cacheprovider -o addopts="" -q \
  -W ignore::DeprecationWarning 2>&1 | tee "$out/gpu-tests.log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
auto() { timeout "$1" "$py" -m bench.routing.bench_auto --device cuda --encoders open_clip:ViT-B-32 \
  --out "$out" "${@:2}" || status=1; }
# strategy level: decisions/s at c=1/16/64, batching on/off, CPU/GPU split per batch
auto 150 --concurrency 1,16,64 --requests 512 --no-http --name auto-gpu-strategy
auto 90 --concurrency 1,64 --requests 256 --no-http --no-cuda-graphs \
  --name auto-gpu-strategy-eager
# HTTP, the defaults (2 ms batch window, one worker)
auto 120 --no-strategy-level --http --http-concurrency 1,64 --http-requests 3000 \
  --client-procs 4 --name auto-gpu-http-default
# HTTP, no batch window (dispatch at once, batches grow while the GPU is busy), 1, 4, 8 workers
auto 200 --no-strategy-level --http --http-concurrency 1,64 --http-requests 4000 \
  --http-workers 1,4,8 --client-procs 4 --window-ms 0 --name auto-gpu-http-workers
exit $status
