"""The worked notebooks in analyses/ run end to end (so a broken notebook fails CI) and are
stored without outputs.

Each notebook is executed with nbclient in a kernel started from *this* interpreter
(``sys.executable -m ipykernel_launcher``), whatever ``python3`` kernelspec Jupyter would
find on the machine: the kernel imports the same installed mesostats as the tests. The
notebooks run in the analyses/ folder; they write no files.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager, NoSuchKernel
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ANALYSES = Path(__file__).resolve().parent.parent / "analyses"
NOTEBOOKS = (
    "01_data_validation.ipynb",
    "02_regrowth_by_ingredient.ipynb",
    "03_side_effects.ipynb",
    "04_power.ipynb",
    "05_primary_analysis.ipynb",
    "06_sensitivity.ipynb",
)
CELL_TIMEOUT = 120  # seconds per cell


class ThisInterpreterKernels(KernelSpecManager):
    """A kernelspec manager whose only kernel, "python3", is the running interpreter."""

    def find_kernel_specs(self) -> dict[str, str]:
        return {"python3": str(ANALYSES)}

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        if kernel_name != "python3":
            raise NoSuchKernel(kernel_name)
        return KernelSpec(
            argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            display_name=f"Python {sys.version_info.major}.{sys.version_info.minor} (tests)",
            language="python",
            resource_dir=str(ANALYSES),
        )


def execute(path: Path) -> nbformat.NotebookNode:
    """Run every cell (in analyses/); a failing cell raises CellExecutionError with its
    traceback."""
    nb = nbformat.read(path, as_version=4)
    manager = KernelManager(kernel_name="python3", kernel_spec_manager=ThisInterpreterKernels())
    client = NotebookClient(
        nb,
        km=manager,
        kernel_name="python3",
        timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(ANALYSES)}},
    )
    # we pass our own kernel manager, so nbclient would leave the kernel and its sockets to
    # us: cleanup_kc=True makes it shut the kernel down and close the channels (also after a
    # failing cell)
    client.execute(cleanup_kc=True)
    return nb


def test_the_kernel_is_this_interpreter():
    spec = ThisInterpreterKernels().get_kernel_spec("python3")
    assert spec.argv[0] == sys.executable


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_end_to_end(name):
    nb = execute(ANALYSES / name)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code)
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert errors == []
    images = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
    assert images, "every notebook draws at least one figure"


@pytest.mark.slow
def test_a_broken_notebook_fails(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [
        nbformat.v4.new_code_cell("import mesostats as ms"),
        nbformat.v4.new_code_cell("raise ValueError('broken on purpose')"),
    ]
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(CellExecutionError, match="broken on purpose"):
        execute(path)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_stored_without_outputs_and_explains_itself(name):
    nb = nbformat.read(ANALYSES / name, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    markdown = [c for c in nb.cells if c.cell_type == "markdown"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    assert len(markdown) >= len(code) // 2
    assert markdown[0].source.startswith("# ")
