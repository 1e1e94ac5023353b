"""docs/security.md names the test that attacks each threat: every name it gives must exist, so the
threat model cannot quietly point at a test that was renamed or deleted."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "security.md"


def _references() -> list[str]:
    """Full ``file::[Class::]test`` references; ``::name`` continues the previous file or class."""
    full, scope = [], ""
    for ref in re.findall(r"`([^`]*::[^`]*)`", DOC.read_text()):
        if ref == "file::test":  # the legend
            continue
        if ref.startswith("::"):
            full.append(scope + ref)
        else:
            parts = ref.split("::")
            scope = "::".join(parts[:-1]) if len(parts) > 2 else parts[0]
            full.append(ref)
    return full


def _resolves(reference: str) -> bool:
    module_file, *names = reference.split("::")
    module = importlib.import_module(f"tests.{module_file.removesuffix('.py')}")
    target = module
    for name in names:
        name = name.split("[")[0]
        if name == "*":
            return isinstance(target, type)
        if not hasattr(target, name):
            # "::test" after a class may also name a module-level test of the same file
            return target is not module and hasattr(module, name)
        target = getattr(target, name)
    return callable(target)


def test_every_test_the_threat_model_names_exists():
    references = _references()
    assert len(references) > 40
    missing = [reference for reference in references if not _resolves(reference)]
    assert not missing, missing
