"""Write the "< previous | Index | next >" cell at the top and bottom of every course notebook.

As in jakevdp/PythonDataScienceHandbook's tools/add_navigation.py: the cell is generated from the
course order (the NN_ file names) and re-written in place, so adding, removing or renaming a notebook
only needs another run. The generated cells carry the metadata {"pgmlkit": "navigation"} and the tag
`navigation`; the tool finds them by that, never by their text, and leaves every other cell alone.
They are markdown cells without outputs, so nbval and the exercise tests do not see them.

    python tools/add_navigation.py            # write the cells (only notebooks that change are written)
    python tools/add_navigation.py --check    # exit 1 and list the notebooks that are out of sync
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from course import NAVIGATION, NOTEBOOKS, CourseError, Lesson, course, is_generated  # noqa: E402

INDEX = "index.ipynb"


def navigation_markdown(previous: Lesson | None, following: Lesson | None) -> str:
    parts = []
    if previous:
        parts.append(f"< [{previous.label}]({previous.file})")
    parts.append(f"[Index]({INDEX})")
    if following:
        parts.append(f"[{following.label}]({following.file}) >")
    return " | ".join(parts)


def navigation_cell(nb, source: str, position: str):
    cell = nbformat.v4.new_markdown_cell(source)
    cell.metadata = {"editable": False, "pgmlkit": NAVIGATION, "tags": [NAVIGATION]}
    if (nb.nbformat, nb.nbformat_minor) >= (4, 5):
        cell.id = f"navigation-{position}"      # stable ids: a second run changes nothing
    else:
        cell.pop("id", None)
    return cell


def with_navigation(nb, source: str):
    """The notebook with exactly one navigation cell first and one last (old ones removed)."""
    cells = [c for c in nb.cells if not is_generated(c) and NAVIGATION not in c.get("metadata", {}).get("tags", [])]
    nb.cells = [navigation_cell(nb, source, "top"), *cells, navigation_cell(nb, source, "bottom")]
    return nb


def plan(notebooks: Path = NOTEBOOKS) -> dict[Path, str]:
    """{notebook path: its new text if its navigation must change, else None}."""
    lessons = course(notebooks)
    result = {}
    for i, lesson in enumerate(lessons):
        path = notebooks / lesson.file
        previous = lessons[i - 1] if i > 0 else None
        following = lessons[i + 1] if i + 1 < len(lessons) else None
        nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
        before = nbformat.writes(nb)
        after = nbformat.writes(with_navigation(nb, navigation_markdown(previous, following)))
        # Compared after the same serialiser, so only a real change counts (not JSON formatting).
        result[path] = None if after == before else after + "\n"
    return result


def out_of_sync(notebooks: Path = NOTEBOOKS) -> list[Path]:
    return [path for path, text in plan(notebooks).items() if text is not None]


def write(notebooks: Path = NOTEBOOKS) -> list[Path]:
    changed = []
    for path, text in plan(notebooks).items():
        if text is not None:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook is out of sync")
    parser.add_argument("--notebooks", type=Path, default=NOTEBOOKS, help="folder of NN_*.ipynb (default: notebooks/)")
    args = parser.parse_args(argv)
    try:
        if args.check:
            stale = out_of_sync(args.notebooks)
            for path in stale:
                print(f"[FAIL] navigation out of date: {path.name}", file=sys.stderr)
            if stale:
                print("       Fix: python tools/add_navigation.py (or make navigation)", file=sys.stderr)
                return 1
            print(f"[ OK ] navigation in sync in {len(plan(args.notebooks))} notebooks")
            return 0
        changed = write(args.notebooks)
    except CourseError as error:
        print(f"[FAIL] {error}", file=sys.stderr)
        return 1
    for path in changed:
        print(f"navigation written: {path.name}")
    if not changed:
        print("navigation already in sync")
    return 0


if __name__ == "__main__":
    sys.exit(main())
