#!/usr/bin/env bash
# Create .venv (if missing) and install align_lens with its dev extra. torch==2.13.0 goes first:
# it is a CPU wheel on local disk; letting pip resolve plain `torch` would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e ".[dev]"
