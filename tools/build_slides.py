"""`make slides`: reveal.js slides from the course notebooks, with their stored outputs, for offline use.

    python tools/build_slides.py                       # every NN_*.ipynb -> build/slides/NN_*.slides.html
    python tools/build_slides.py notebooks/05_*.ipynb  # some of them
    python tools/build_slides.py --speaker-notes       # keep `instructor` cells, as speaker notes (press S)
    python tools/build_slides.py --out DIR --cdn       # somewhere else; load reveal.js from a CDN (no npm)

Nothing is executed: the slides show the outputs stored in the notebooks (nbval keeps them current).
The slide types are set on an in-memory copy — a slide for the title and for every `## ` section,
a sub-slide for every `### ` — so the notebooks carry no slideshow metadata unless an author wants
to override a cell. Cells tagged `instructor` and the navigation cells are not in the slides.
reveal.js, require.js, jQuery and MathJax are copied into DIR/_assets/ (tools/web_assets.py), so the
folder works from a USB stick in a room without Wi-Fi: open any .slides.html file in a browser.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import nbformat
from nbconvert import SlidesExporter

sys.path.insert(0, str(Path(__file__).resolve().parent))
import web_assets  # noqa: E402
from course import NOTEBOOKS, ROOT, notebook_paths  # noqa: E402
from nbcopies import InstructorNotes, RewriteLinks, SlideSections, SolutionsAsDisclosure, remove_tags  # noqa: E402

TEMPLATES = Path(__file__).resolve().parent / "templates"
OUT = ROOT / "build" / "slides"


def exporter(cdn: bool) -> SlidesExporter:
    exp = SlidesExporter(extra_template_basedirs=[str(TEMPLATES)], template_name="pgmlkit_reveal")
    for name, url in web_assets.urls(None if cdn else web_assets.ASSETS).items():
        setattr(exp, name, url)
    exp.reveal_theme = "white"
    exp.reveal_transition = "none"       # a projector is not the place for animations
    exp.reveal_number = "c/t"
    exp.reveal_scroll = True             # a long slide scrolls instead of being cut off
    exp.exclude_input_prompt = True
    exp.exclude_output_prompt = True
    return exp


def slide_copy(nb, notebooks_dir: Path, out: Path, speaker_notes: bool):
    """The in-memory copy the slides are made from (run before nbconvert's own reveal preprocessor)."""
    steps = [remove_tags(instructor=not speaker_notes, navigation=True)]
    if speaker_notes:
        steps.append(InstructorNotes())
    steps += [SolutionsAsDisclosure(notebooks_dir=str(notebooks_dir)),
              RewriteLinks(notebooks_dir=str(notebooks_dir), output_dir=str(out), notebook_suffix=".slides.html"),
              SlideSections()]
    nb, resources = copy.deepcopy(nb), {}
    for step in steps:
        nb, resources = step(nb, resources)
    return nb


def build(paths: list[Path], out: Path = OUT, cdn: bool = False, speaker_notes: bool = False,
          vendor: Path = web_assets.VENDOR) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    if not cdn:
        web_assets.install(out, vendor, names=("reveal.js", "requirejs", "jquery", "mathjax"))
    exp = exporter(cdn)
    written = []
    for path in paths:
        nb = slide_copy(nbformat.read(path, as_version=4), path.parent, out, speaker_notes)
        body, _ = exp.from_notebook_node(nb, resources={"metadata": {"name": path.stem, "path": str(path.parent)}})
        target = out / f"{path.stem}.slides.html"
        target.write_text(body, encoding="utf-8")
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebooks/NN_*.ipynb")
    parser.add_argument("--out", type=Path, default=OUT, help="output folder (default: build/slides)")
    parser.add_argument("--cdn", action="store_true", help="load reveal.js etc. from a CDN (needs no npm; needs a network to show)")
    parser.add_argument("--speaker-notes", action="store_true", help="keep `instructor` cells as speaker notes")
    args = parser.parse_args(argv)
    paths = args.notebooks or notebook_paths(NOTEBOOKS)
    started = time.perf_counter()
    try:
        written = build(paths, args.out, args.cdn, args.speaker_notes)
    except web_assets.AssetError as error:
        print(f"[FAIL] {error}", file=sys.stderr)
        return 1
    for target in written:
        print(f"slides: {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}")
    print(f"{len(written)} slide decks in {time.perf_counter() - started:.1f} s; open one in a browser"
          + ("" if args.cdn else " (works offline: reveal.js is in _assets/)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
