"""Execute examples/two_hop.ipynb top to bottom and check its per-step binding (slow: about a minute)."""

from __future__ import annotations

import json
from pathlib import Path

import nbclient
import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "two_hop.ipynb"


@pytest.mark.slow
def test_two_hop_notebook_runs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    text = "".join(o.get("text", "") for o in nb.cells[-1]["outputs"] if o.output_type == "stream")
    summary = json.loads(text.strip().splitlines()[-1])
    assert summary["binding_heldout_step1"] > 0.9 and summary["binding_heldout_step2"] > 0.9
