"""Plain export's refusals name functions that exist."""

import importlib
import re

import pytest
from sae_lens import StandardSAE, StandardSAEConfig

from align_lens.saes.plain import aligned_from_plain


def test_rebuilding_an_ordinary_sae_names_the_function_that_aligns_it():
    sae = StandardSAE(StandardSAEConfig(d_in=8, d_sae=16))
    with pytest.raises(ValueError, match="concept table") as err:
        aligned_from_plain(sae)
    dotted = re.search(r"use (align_lens[\w.]+)\(", str(err.value))
    assert dotted is not None, str(err.value)
    module, name = dotted.group(1).rsplit(".", 1)
    assert callable(getattr(importlib.import_module(module), name))
