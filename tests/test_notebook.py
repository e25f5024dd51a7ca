"""Execute examples/quickstart.ipynb top to bottom and check its key outputs (slow: a few minutes)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbclient
import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


@pytest.mark.slow
def test_quickstart_notebook_runs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    env_model = os.environ.get("ALIGN_LENS_MODEL") or os.environ.get("ALIGN_LENS_TEST_MODEL")
    if env_model:
        os.environ["ALIGN_LENS_MODEL"] = env_model  # the kernel inherits the environment
    client = nbclient.NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    last = nb.cells[-1]["outputs"]
    text = "".join(o.get("text", "") for o in last if o.output_type == "stream")
    summary = json.loads(text.strip().splitlines()[-1])
    assert summary["clean_exact"] > 0.9
    assert summary["binding_heldout"] > 0.9
    assert summary["swap_best_exact"] > 0.3 and summary["paper_best_exact"] > 0.3
    assert summary["ravel_cause"] > 0.3 and summary["ravel_isolation"] > 0.8
    figs = [o for c in nb.cells for o in c.get("outputs", []) if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figs) >= 5  # loss curves, heatmap, alpha curve, pair matrix, delta vs paper
