#!/usr/bin/env bash
# GPU throughput of the full-size LSeg (ViT-L/16, random weights) at 480x480: images/s, latency and
# max allocated memory for fp32/bf16/fp16, batch 1 and 16, torch.compile off and on, next to the eager
# fp32 reference-numerics baseline. One table; installs nothing; a few minutes on one GPU.
#   bash benchmarks/gpu_bench.sh            (from the repository, with lseg installed)
set -euo pipefail
PY=${PYTHON:-python3}
exec "$PY" -m lseg.cli bench --device cuda --precision fp32,bf16,fp16 --batch-size 1,16 --compile off,on \
    --repeats 5 "$@"
