"""The floors of docs/architecture.md hold: the import-linter contracts in pyproject.toml are kept."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_imports_point_down_only_and_no_two_modules_import_each_other() -> None:
    """`lint-imports` keeps both contracts: no import runs back up a floor and no cycle among siblings
    (so a back-edge fails the unit tier too, not only scripts/test)."""
    lint_imports = Path(sys.executable).parent / "lint-imports"
    if not lint_imports.exists():
        pytest.skip("import-linter is a dev tool (not in the dependency-floor venv)")
    done = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "2 kept, 0 broken" in done.stdout
