#!/usr/bin/env bash
# The Qwen3-VL parity tests on a GPU, with the CUDA execution provider: the tiny export's tokens
# must still equal transformers', and the test prints prefill ms and decode tokens/s.
# Needs an NVIDIA GPU with a driver >= 580 (CUDA 13). GPU=N picks the device (default 0).
#
#   scripts/gpu-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# onnxruntime-gpu and its CUDA 13 / cuDNN 9 libraries, from pinned PyPI wheels.
if [ ! -e models/runtime-gpu/libonnxruntime.so ]; then
  python3 -m venv target/tools-venv 2>/dev/null || true
  PYTHON=target/tools-venv/bin/python scripts/fetch-models.sh --gpu
fi
gpu="$PWD/models/runtime-gpu"
export LD_LIBRARY_PATH="$gpu/nvidia/cu13/lib:$gpu/nvidia/cudnn/lib:${LD_LIBRARY_PATH:-}"
export OCRD_TEST_RUNTIME="$gpu/libonnxruntime.so"
export OCRD_TEST_DEVICE="cuda:${GPU:-0}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
cargo test --test it -- --nocapture --test-threads 1 \
  qwen3vl::preprocessing qwen3vl::greedy qwen3vl::deepstack qwen3vl::a_page
