#!/usr/bin/env bash
# The test suite: install, then run pytest (fast tests by default; pass `-m slow` for the end-to-end ones).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
exec .venv/bin/python -m pytest "$@"
