"""Package metadata: installing align_lens never downgrades torch; the dev tools CI runs are declared."""

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")
ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _requirement(name: str, group: list[str]) -> Requirement:
    found = [Requirement(r) for r in group if Requirement(r).name == name]
    assert len(found) == 1, f"{name} should be listed once, got {found}"
    return found[0]


def test_torch_has_a_floor_and_no_ceiling():
    torch = _requirement("torch", PROJECT["dependencies"])
    assert torch.specifier, "torch needs a floor"
    assert all(s.operator == ">=" for s in torch.specifier), f"only a floor is allowed, got {torch.specifier}"
    for newer in ("2.13.0", "2.14.0", "3.0", "9.9.9"):  # a venv with a newer torch keeps it
        assert Version(newer) in torch.specifier
    assert Version("2.1.0") not in torch.specifier


def test_setup_script_pins_the_cpu_torch_before_installing_the_package():
    lines = (ROOT / "scripts" / "setup.sh").read_text().splitlines()
    torch_line = next(i for i, line in enumerate(lines) if re.search(r"pip install .*torch==2\.13\.0", line))
    package_line = next(i for i, line in enumerate(lines) if 'install -q -e ".[dev]"' in line)
    assert torch_line < package_line


def test_dev_extra_has_the_ci_tools():
    dev = {Requirement(r).name for r in PROJECT["optional-dependencies"]["dev"]}
    assert {"ruff", "pyright", "pytest", "pdoc"} <= dev
