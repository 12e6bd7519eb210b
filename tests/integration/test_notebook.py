"""The user guide notebook runs top to bottom on a real Redis, and is committed without outputs.

The notebook is executed from an in-memory copy with nbclient, in a ``python3`` kernel of this
interpreter, so the repository file is never written to. Redis is resolved as everywhere else:
``REDIS_URL`` if set, else the embedded Redis the kernel starts for itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from traitlets.config import Config

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "llm_router.ipynb"
CELL_TIMEOUT_S = 300
# The kernel stops its embedded Redis at exit; jupyter_client's default (SIGTERM after 2.5 s) must
# not cut that short on a loaded machine and leave the server's temporary directory behind.
KERNEL_SHUTDOWN_WAIT_S = 20.0


def _read() -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    return nb


def _code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def test_notebook_is_committed_without_outputs():
    nb = _read()
    dirty = [
        i for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]  # fmt: skip
    assert not dirty, f"cells {dirty} of {NOTEBOOK.name} have outputs or execution counts; strip them"
    timed = [i for i, cell in enumerate(nb.cells) if "execution" in cell.get("metadata", {})]
    assert not timed, f"cells {timed} of {NOTEBOOK.name} carry execution timing metadata; strip it"


def test_notebook_runs_top_to_bottom(tmp_path):
    committed = NOTEBOOK.read_bytes()
    nb = _read()
    # Prove the kernel is this interpreter's (the venv with the package), not some other python3.
    nb.cells.insert(0, nbformat.v4.new_code_cell("import sys; print(sys.prefix)"))

    config = Config()
    config.KernelManager.shutdown_wait_time = KERNEL_SHUTDOWN_WAIT_S
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(tmp_path)}},  # working directory of the kernel
        config=config,
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, if any cell fails

    assert nb.cells[0].outputs[0]["text"].strip() == sys.prefix
    cells = _code_cells(nb)[1:]
    assert all(cell.execution_count is not None for cell in cells)
    outputs = [out for cell in cells for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    figures = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(figures) >= 2, "the savings and cost-weight plots should render"
    assert NOTEBOOK.read_bytes() == committed, "executing the notebook must not write to the repository file"
