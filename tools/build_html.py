"""`make html`: the course as web pages, read without running anything — build/html/index.html.

    python tools/build_html.py                        # notebooks/index.ipynb + every NN_*.ipynb
    python tools/build_html.py notebooks/04_*.ipynb   # some of them (index.html is always built)
    python tools/build_html.py --out DIR --cdn        # somewhere else; MathJax/require.js from a CDN

The pages show the outputs stored in the notebooks (tables, plots, measurements), exactly as nbval
last checked them; nothing is executed. In the copies: cells tagged `instructor` are removed; the
navigation cells stay, with their links pointing at the .html pages; each `# %load solutions/…`
cell becomes a closed "Show the solution" disclosure. Plots are the PNGs stored in the notebooks,
embedded in the page, shown at their stored size (never wider than the page).
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter

sys.path.insert(0, str(Path(__file__).resolve().parent))
import web_assets  # noqa: E402
from course import NOTEBOOKS, ROOT, notebook_paths  # noqa: E402
from nbcopies import RewriteLinks, SolutionsAsDisclosure, remove_tags  # noqa: E402

TEMPLATES = Path(__file__).resolve().parent / "templates"
OUT = ROOT / "build" / "html"
INDEX = NOTEBOOKS / "index.ipynb"


def exporter(cdn: bool) -> HTMLExporter:
    exp = HTMLExporter(extra_template_basedirs=[str(TEMPLATES)], template_name="pgmlkit_lab")
    settings = web_assets.urls(None if cdn else web_assets.ASSETS)
    exp.require_js_url = settings["require_js_url"]
    exp.mathjax_url = settings["mathjax_url"]
    exp.embed_images = True          # images referenced from markdown travel inside the page
    return exp


def reading_copy(nb, notebooks_dir: Path, out: Path):
    steps = [remove_tags(instructor=True, navigation=False),
             SolutionsAsDisclosure(notebooks_dir=str(notebooks_dir)),
             RewriteLinks(notebooks_dir=str(notebooks_dir), output_dir=str(out), notebook_suffix=".html")]
    nb, resources = copy.deepcopy(nb), {}
    for step in steps:
        nb, resources = step(nb, resources)
    return nb


def build(paths: list[Path], out: Path = OUT, cdn: bool = False, vendor: Path = web_assets.VENDOR,
          index: Path = INDEX) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    if not cdn:
        web_assets.install(out, vendor, names=("requirejs", "mathjax"))
    exp = exporter(cdn)
    written = []
    for path in ([index] if index.exists() else []) + [p for p in paths if p.resolve() != index.resolve()]:
        nb = reading_copy(nbformat.read(path, as_version=4), path.parent, out)
        body, _ = exp.from_notebook_node(nb, resources={"metadata": {"name": path.stem, "path": str(path.parent)}})
        target = out / f"{path.stem}.html"
        target.write_text(body, encoding="utf-8")
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebooks/NN_*.ipynb")
    parser.add_argument("--out", type=Path, default=OUT, help="output folder (default: build/html)")
    parser.add_argument("--cdn", action="store_true", help="load MathJax and require.js from a CDN (needs no npm)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        written = build(args.notebooks or notebook_paths(NOTEBOOKS), args.out, args.cdn)
    except web_assets.AssetError as error:
        print(f"[FAIL] {error}", file=sys.stderr)
        return 1
    for target in written:
        print(f"html: {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}")
    print(f"{len(written)} pages in {time.perf_counter() - started:.1f} s; open {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
