#!/usr/bin/env bash
# Build the API reference from docstrings with pdoc into site/api; any pdoc warning fails the build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
rm -rf site/api
.venv/bin/python -W error::UserWarning -W ignore::DeprecationWarning -m pdoc align_lens -o site/api --docformat google
echo "API docs written to site/api/index.html"
