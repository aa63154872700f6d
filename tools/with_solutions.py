"""A copy of a course notebook with every exercise answered by its hidden solution.

scripts/test_notebooks.sh runs the copy under nbval as each notebook's second run, on the database the
first run left: one run proves both that the notebook runs twice with the same outputs and that every
solution passes its check (PGMLKIT_EXERCISES_STRICT=1 makes a failing check raise). The answer and check
cells' outputs are not compared (tag nbval-ignore-output): they differ from the unanswered notebook's.

Usage: tools/with_solutions.py notebooks/NN_topic.ipynb OUT.ipynb
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SOLUTIONS = NOTEBOOKS / "solutions"
EXERCISE_ID = re.compile(r"#\s*Exercise\s+(\d\d\.\d+)")
ANSWER, CHECK, IGNORE_OUTPUT = "exercise-answer", "exercise-check", "nbval-ignore-output"


def tags(cell) -> list[str]:
    return cell.metadata.get("tags", [])


def exercise_ids(nb) -> list[str]:
    ids = []
    for cell in nb.cells:
        if ANSWER in tags(cell):
            match = EXERCISE_ID.search(cell.source)
            if not match:
                raise ValueError(f"an exercise-answer cell lacks '# Exercise NN.k': {cell.source[:80]!r}")
            ids.append(match.group(1))
    return ids


def solution_path(exercise_id: str) -> Path:
    return SOLUTIONS / f"{exercise_id.replace('.', '_')}.py"


def with_solutions(nb):
    """nb with each answer cell's source replaced by its solution; answer and check cells' outputs ignored."""
    nb = nbformat.from_dict(nb)            # a copy: the caller's notebook is left as it was
    for cell in nb.cells:
        if ANSWER in tags(cell):
            cell.source = solution_path(EXERCISE_ID.search(cell.source).group(1)).read_text()
        if {ANSWER, CHECK} & set(tags(cell)) and IGNORE_OUTPUT not in tags(cell):
            cell.metadata["tags"] = [*tags(cell), IGNORE_OUTPUT]
    return nb


def main(source: str, target: str) -> int:
    nb = nbformat.read(source, as_version=4)
    if not exercise_ids(nb):
        print(f"{source} has no exercises", file=sys.stderr)
        return 1
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(with_solutions(nb), target)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
