#!/usr/bin/env bash
# The main job: install, then run the end-to-end AlignSAE demo on the embedded default (outputs in runs/demo).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/align-lens demo --out runs/demo --overwrite "$@"
