#!/usr/bin/env bash
# The GPU check as one device run, within 8 minutes on one H200. Prepare here first: the
# wheels of bench/gpu_wheels.txt in .whl/, checked with `python -m bench.gpu_wheels`. Then
# run it with the device tool: carry [".whl"], command "bash bench/gpu_check.sh",
# timeout_s 540. Every phase writes $OUT/gpu_check.json as it measures, so a timeout or a
# failed phase keeps what came before it.
set -euo pipefail
out="${OUT:-/tmp/gpu-check}"
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
# datasets needs pyarrow>=24, which is too large to carry: say what the device has.
python3 -c "import pyarrow; print('device pyarrow', pyarrow.__version__)" | tee "$out/log.txt"
DS_BUILD_OPS=0 PYTHONUNBUFFERED=1 timeout 450 python3 -m bench.gpu_check --out "$out" 2>&1 \
  | tee -a "$out/log.txt"
