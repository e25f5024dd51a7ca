"""Every module has a test file named for it, or a line in tests/README.md saying why not."""

from pathlib import Path

TESTS = Path(__file__).resolve().parent
PACKAGE = TESTS.parent / "align_lens"


def test_every_module_has_a_test_file_or_a_reason():
    readme = (TESTS / "README.md").read_text()
    untested = [
        str(module.relative_to(PACKAGE))
        for module in sorted(PACKAGE.rglob("*.py"))
        if module.name not in ("__init__.py", "__main__.py")
        and not list(TESTS.rglob(f"test_{module.stem}*.py"))
        and str(module.relative_to(PACKAGE)) not in readme
    ]
    assert not untested, f"{untested}: add tests/<folder>/test_<module>.py or a line in tests/README.md saying why not"
