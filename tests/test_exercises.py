"""Every exercise's hidden solution passes its check, run inside its own notebook.

For each notebook, the cells tagged `exercise-answer` (first line: `# Exercise NN.k ...`) are
replaced by notebooks/solutions/NN_k.py, the notebook is executed top to bottom on the real
database, and every cell tagged `exercise-check` must print "✅ Correct".
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SOLUTIONS = NOTEBOOKS / "solutions"
EXERCISE_ID = re.compile(r"#\s*Exercise\s+(\d\d\.\d+)")


def notebooks_with_exercises():
    found = []
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        if any("exercise-answer" in c.metadata.get("tags", []) for c in nb.cells):
            found.append(path)
    return found


def exercise_ids(nb) -> list[str]:
    ids = []
    for cell in nb.cells:
        if "exercise-answer" in cell.metadata.get("tags", []):
            match = EXERCISE_ID.search(cell.source)
            assert match, f"an exercise-answer cell lacks '# Exercise NN.k': {cell.source[:80]!r}"
            ids.append(match.group(1))
    return ids


@pytest.mark.parametrize("path", notebooks_with_exercises(), ids=lambda p: p.name)
def test_notebook_has_two_exercises_with_solutions_and_checks(path):
    nb = nbformat.read(path, as_version=4)
    ids = exercise_ids(nb)
    assert len(ids) >= 2, f"{path.name} has {len(ids)} exercises; the course wants at least two"
    checks = [c for c in nb.cells if "exercise-check" in c.metadata.get("tags", [])]
    assert len(checks) >= len(ids)
    for exercise_id in ids:
        solution = SOLUTIONS / f"{exercise_id.replace('.', '_')}.py"
        assert solution.exists(), f"missing {solution.relative_to(NOTEBOOKS.parent)}"
        loads = [c for c in nb.cells if f"%load solutions/{solution.name}" in c.source]
        assert loads, f"{path.name}: no '# %load solutions/{solution.name}' cell to reveal the solution"


@pytest.mark.notebook_run      # scripts/test_notebooks.sh runs it right after each notebook's nbval runs
@pytest.mark.parametrize("path", notebooks_with_exercises(), ids=lambda p: p.name)
def test_solutions_pass_their_checks(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if "exercise-answer" in cell.metadata.get("tags", []):
            exercise_id = EXERCISE_ID.search(cell.source).group(1)
            cell.source = (SOLUTIONS / f"{exercise_id.replace('.', '_')}.py").read_text()
    NotebookClient(nb, kernel_name="pg-ml-kit", timeout=600,
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    outputs = []
    for cell in nb.cells:
        if "exercise-check" in cell.metadata.get("tags", []):
            text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
            outputs.append(text)
            assert "✅ Correct" in text, f"{path.name}: a solution fails its check:\n{cell.source}\n{text}"
    assert outputs
