#!/bin/sh
# One command that checks a GPU (bench/gpu_check.py explains what it does): on a CUDA machine the tests marked
# `cuda`, every notebook at smoke on the GPU, the reference-vs-fast-path throughput and one JSON report
# (results/gpu/gpu_check.json); on a CPU its CPU part. Options go to bench/gpu_check.py (--help).
#   bench/gpu_check.sh [--json PATH] [--no-compile] [--skip-notebooks]
# Python: $PYTHON, else the repository's .venv, else python3.
cd "$(dirname "$0")/.." || exit 1
# cuBLAS reads its workspace configuration when its first handle is made: set it before Python starts (the
# deterministic reference runs need it; dmdlib.accel.deterministic_mode sets it too, if it is still unset)
export CUBLAS_WORKSPACE_CONFIG="${CUBLAS_WORKSPACE_CONFIG:-:4096:8}"
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
exec "$PY" bench/gpu_check.py "$@"
