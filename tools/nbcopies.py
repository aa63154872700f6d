"""nbconvert preprocessors that turn a course notebook into a copy for an audience (slides, HTML).

The notebooks in notebooks/ are the one source. The copies are made in memory while exporting:
nothing here writes back to a notebook.

- Cells tagged `instructor` (notes for whoever presents) are removed with nbconvert's TagRemovePreprocessor —
  or, in the presenter's own slides, turned into speaker notes. Slides also drop the `navigation` cells.
- `# %load solutions/NN_k.py` cells become a closed "Solution" disclosure with the solution's code, and the
  "Stuck? Uncomment and run the next cell twice ..." line before them goes (nothing can run in a page).
- Relative links are fixed for the output folder: NN_topic.ipynb -> NN_topic.html, ../docs/x.md -> the file.
- For slides: every `## ` section starts a slide (markdown cells holding several sections are split),
  `### ` a sub-slide; a cell's own `slideshow` metadata, if its author set one, wins.
"""
from __future__ import annotations

import copy
import html
import os
import re
from pathlib import Path

import nbformat
from nbconvert.preprocessors import Preprocessor, TagRemovePreprocessor
from traitlets import Unicode

INSTRUCTOR, NAVIGATION = "instructor", "navigation"
LOAD_SOLUTION = re.compile(r"^\s*#\s*%load\s+(\S+\.py)\s*$")
STUCK = re.compile(r"^\s*Stuck\?", re.IGNORECASE)
LINK = re.compile(r"(\]\(|href=\")(?!https?:|mailto:|#|/)([^)\"\s]+)")


def tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def remove_tags(instructor: bool = True, navigation: bool = True) -> TagRemovePreprocessor:
    """Drops the instructor cells (unless they become speaker notes) and, for slides, the navigation cells."""
    remove = {name for name, drop in ((INSTRUCTOR, instructor), (NAVIGATION, navigation)) if drop}
    return TagRemovePreprocessor(remove_cell_tags=remove, enabled=True)


class CopyStep(Preprocessor):
    """A preprocessor that is on when created (nbconvert's default is off until configured)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("enabled", True)
        super().__init__(**kwargs)


class InstructorNotes(CopyStep):
    """Instructor cells become reveal.js speaker notes (press S during the talk)."""

    def preprocess(self, nb, resources):
        for cell in nb.cells:
            if INSTRUCTOR in tags(cell):
                cell.metadata["slideshow"] = {"slide_type": "notes"}
        return nb, resources


class SolutionsAsDisclosure(CopyStep):
    """`# %load solutions/x.py` -> a closed <details> with the solution, read from the notebooks folder."""

    notebooks_dir = Unicode("").tag(config=True)

    def preprocess(self, nb, resources):
        cells = []
        for cell in nb.cells:
            match = LOAD_SOLUTION.match(cell.source) if cell.cell_type == "code" else None
            if not match:
                cells.append(cell)
                continue
            path = Path(self.notebooks_dir) / match.group(1)
            if not path.exists():
                cells.append(cell)
                continue
            if cells and cells[-1].cell_type == "markdown" and STUCK.match(cells[-1].source):
                cells.pop()
            # One line of HTML: a blank line would end the markdown HTML block and leave the code outside.
            code = html.escape(path.read_text(encoding="utf-8").strip()).replace("\n", "&#10;")
            disclosure = nbformat.v4.new_markdown_cell(
                f'<details class="kit-solution"><summary>Stuck? Show the solution '
                f'(<code>{html.escape(match.group(1))}</code>)</summary>'
                f'<pre><code class="language-python">{code}</code></pre></details>')
            if "id" in cell:
                disclosure.id = cell.id          # deterministic output: same id as the cell it replaces
            else:
                disclosure.pop("id", None)
            cells.append(disclosure)
        nb.cells = cells
        return nb, resources


class RewriteLinks(CopyStep):
    """Relative links in markdown, made to work from the output folder."""

    notebooks_dir = Unicode("").tag(config=True)
    output_dir = Unicode("").tag(config=True)
    notebook_suffix = Unicode(".html").tag(config=True)

    def fix(self, target: str) -> str:
        path, _, anchor = target.partition("#")
        anchor = f"#{anchor}" if anchor else ""
        if path.endswith(".ipynb") and "/" not in path:
            return path[: -len(".ipynb")] + self.notebook_suffix + anchor
        source = Path(self.notebooks_dir, path)
        if not source.exists():
            return target
        return Path(os.path.relpath(source.resolve(), Path(self.output_dir).resolve())).as_posix() + anchor

    def preprocess(self, nb, resources):
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = LINK.sub(lambda m: m.group(1) + self.fix(m.group(2)), cell.source)
        return nb, resources


def split_sections(markdown: str) -> list[str]:
    """A markdown text cut before each `## ` heading that is not inside a ``` fence."""
    parts, current, fenced = [], [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("## ") and any(s.strip() for s in current):
            parts.append("\n".join(current).strip("\n"))
            current = []
        current.append(line)
    if any(s.strip() for s in current):
        parts.append("\n".join(current).strip("\n"))
    return parts or [markdown]


class SlideSections(CopyStep):
    """Slide types from the headings, set on the copy (never on the source notebook)."""

    def preprocess(self, nb, resources):
        cells = []
        for cell in nb.cells:
            if cell.cell_type == "markdown" and "slideshow" not in cell.metadata:
                for i, part in enumerate(split_sections(cell.source)):
                    piece = copy.deepcopy(cell)
                    piece.source = part
                    if i:
                        piece.pop("attachments", None)
                        if "id" in cell:
                            piece.id = f"{cell.id}-{i}"[:64]
                    cells.append(piece)
            else:
                cells.append(cell)
        for cell in cells:
            if "slideshow" in cell.metadata:
                continue
            first = cell.source.lstrip().split("\n", 1)[0] if cell.cell_type == "markdown" else ""
            if first.startswith(("# ", "## ")):
                kind = "slide"
            elif first.startswith("### ") or first.startswith("**Exercise "):
                kind = "subslide"
            else:
                kind = "-"
            cell.metadata["slideshow"] = {"slide_type": kind}
        nb.cells = cells
        return nb, resources
