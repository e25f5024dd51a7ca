#!/usr/bin/env bash
# Build the API reference from docstrings with pdoc into site/api; any pdoc warning fails the build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
rm -rf site/api
# Every top-level module and sub-package by name: pdoc follows align_lens.__all__, which lists functions only.
modules=$(.venv/bin/python -c 'import pkgutil, align_lens; print(" ".join(["align_lens"] + [f"align_lens.{m.name}" for m in pkgutil.iter_modules(align_lens.__path__) if not m.name.startswith("_")]))')
# shellcheck disable=SC2086
.venv/bin/python -W error::UserWarning -W ignore::DeprecationWarning -m pdoc $modules -o site/api --docformat google
echo "API docs written to site/api/index.html"
