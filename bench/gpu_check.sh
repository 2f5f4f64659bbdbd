#!/usr/bin/env bash
# The GPU check as one device run: install the wheels carried in .whl (the device image has
# torch but older sentence-transformers/transformers and no datasets/deepspeed/mteb), then
# measure. Prepare the wheels here first (see bench/gpu_wheels.txt), then run it with the
# device tool: carry [".whl"], command "bash bench/gpu_check.sh", timeout_s 540.
set -euo pipefail
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
out="${OUT:-/tmp/gpu-check}"
PYTHONUNBUFFERED=1 timeout 500 python3 -m bench.gpu_check --out "$out" 2>&1 | tee "$out/log.txt"
