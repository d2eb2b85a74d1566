"""Every notebook in notebooks/ runs top to bottom (with DTRL_NOTEBOOK_QUICK=1: smoke-sized settings).

The committed notebooks carry the outputs of such a quick run (so they read well on GitHub); the test
clears them and executes again.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_the_three_notebooks_exist():
    names = {p.name for p in NOTEBOOKS}
    assert {"01_quickstart.ipynb", "02_paper_figures.ipynb", "03_custom_env.ipynb"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, monkeypatch):
    monkeypatch.setenv("DTRL_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "agg")
    # The kernel compiles a few training programs; XLA's backend optimisations only cost time here
    # (tests/conftest.py already sets the flag unless DTRL_TEST_FAST_COMPILE=0).
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in flags:
        monkeypatch.setenv("XLA_FLAGS", f"{flags} --xla_backend_optimization_level=0".strip())
    book = nbformat.read(path, as_version=4)
    assert any(c.get("outputs") for c in book.cells if c.cell_type == "code"), "commit notebooks with their outputs"
    assert any("%pip install" in c.source for c in book.cells if c.cell_type == "code")
    for c in book.cells:
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
    client = nbclient.NotebookClient(
        book, timeout=170, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    errors = [o for c in book.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
