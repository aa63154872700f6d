"""The course list, read from the notebooks themselves — never maintained by hand.

Every `notebooks/NN_topic.ipynb` says who it is in its title cell and how long it takes in its
Prerequisites section (CONTRIBUTING.md, "Notebooks"):

    # 04 · Training in the database

    Train the talk's model inside PostgreSQL, then ...      <- this paragraph is "what it teaches"
    ...
    **Time to learn: 30 minutes**

The index notebook, the README table, the navigation cells and the instructor guide's agenda are all
generated from `course()`. A notebook that lacks one of these lines stops the tools with a message that
names the notebook and the line it needs.

    python tools/course.py          # the course as a table
    python tools/course.py --json   # the same, for other tools
"""
from __future__ import annotations

import json
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
NAVIGATION = "navigation"          # metadata {"pgmlkit": "navigation"} and tag "navigation"

TITLE = re.compile(r"^#\s+(\d\d)\s*[·:\-–—.]\s*(.+?)\s*$")
TIME_TO_LEARN = re.compile(r"\*\*\s*Time to learn\s*:\s*(\d+)\s*min(?:ute)?s?\s*\.?\s*\*\*", re.IGNORECASE)


class CourseError(ValueError):
    """A notebook does not have the shape the course tools read (names the notebook and the fix)."""


@dataclass(frozen=True)
class Lesson:
    number: str        # "04"
    file: str          # "04_training.ipynb"
    title: str         # "Training in the database"
    minutes: int       # from "**Time to learn: N minutes**"
    teaches: str       # the first paragraph after the title

    @property
    def label(self) -> str:
        return f"{self.number} · {self.title}"


def is_generated(cell) -> bool:
    """Cells written by the tools (navigation), which the course list must not read."""
    return cell.get("metadata", {}).get("pgmlkit") == NAVIGATION


def first_paragraph(markdown: str) -> str:
    """The first paragraph, on one line: the author's own summary of the notebook."""
    paragraph = markdown.strip().split("\n\n")[0]
    return " ".join(line.strip() for line in paragraph.splitlines())


def read_lesson(path: Path) -> Lesson:
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "markdown" and not is_generated(c)]
    number = path.name[:2]
    if not cells:
        raise CourseError(f"{path.name}: no markdown cell; the first one must be the title '# {number} · Title'.")
    lines = cells[0].source.strip().splitlines()
    match = TITLE.match(lines[0]) if lines else None
    if not match:
        raise CourseError(f"{path.name}: the first markdown cell must start with '# {number} · Title', "
                          f"not {lines[0][:60] if lines else '(empty)'!r}.")
    if match.group(1) != number:
        raise CourseError(f"{path.name}: the title says {match.group(1)} but the file name says {number}.")
    rest = "\n".join(lines[1:]).strip()
    if not rest:
        raise CourseError(f"{path.name}: the title cell needs a short paragraph after the title that says what "
                          "the notebook teaches (it becomes the course index entry).")
    for cell in cells:
        found = TIME_TO_LEARN.search(cell.source)
        if found:
            minutes = int(found.group(1))
            break
    else:
        raise CourseError(f"{path.name}: no '**Time to learn: N minutes**' line (it goes under the "
                          "Prerequisites table; the index and the agenda add these up).")
    return Lesson(number, path.name, match.group(2), minutes, first_paragraph(rest))


def notebook_paths(notebooks: Path = NOTEBOOKS) -> list[Path]:
    return sorted(notebooks.glob(NOTEBOOK_GLOB))


def course(notebooks: Path = NOTEBOOKS) -> list[Lesson]:
    lessons = [read_lesson(p) for p in notebook_paths(notebooks)]
    numbers = [lesson.number for lesson in lessons]
    duplicates = sorted({n for n in numbers if numbers.count(n) > 1})
    if duplicates:
        raise CourseError(f"two notebooks share a number: {duplicates}; numbers order the course and must be unique.")
    return lessons


def hours(minutes: int) -> str:
    """135 -> '2 h 15 min'."""
    h, m = divmod(minutes, 60)
    if not h:
        return f"{m} min"
    return f"{h} h" + (f" {m:02d} min" if m else "")


def main(argv: list[str]) -> int:
    try:
        lessons = course()
    except CourseError as error:
        print(f"[FAIL] {error}", file=sys.stderr)
        return 1
    if "--json" in argv:
        print(json.dumps([asdict(lesson) for lesson in lessons], indent=1, ensure_ascii=False))
        return 0
    for lesson in lessons:
        print(f"{lesson.number}  {lesson.minutes:>3} min  {lesson.title}  ({lesson.file})\n"
              f"               {lesson.teaches}")
    print(f"\n{len(lessons)} notebooks, {hours(sum(l.minutes for l in lessons))} in total")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
