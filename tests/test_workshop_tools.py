"""The workshop tooling: generated navigation, index, agenda, slides, HTML copies, troubleshooting page.

The first tests check the repository itself (everything generated is in sync with the notebooks; every setup
failure message is documented). The others run the tools on copies in a temporary folder, so they prove
the tools work — and can fail — without touching notebooks/.
"""
from __future__ import annotations

import copy
import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import add_navigation  # noqa: E402
import build_html  # noqa: E402
import build_index  # noqa: E402
import build_slides  # noqa: E402
import fail_messages  # noqa: E402
import web_assets  # noqa: E402
from course import CourseError, Lesson, course, notebook_paths  # noqa: E402

SENTINEL = "INSTRUCTOR-ONLY-7f3a: ask the room before showing this"


# --- the repository is in sync ------------------------------------------------------------------
def test_every_notebook_is_in_the_course_list():
    lessons = course()
    assert [lesson.file for lesson in lessons] == [p.name for p in notebook_paths()]
    assert lessons, "no notebooks/NN_*.ipynb found"
    for lesson in lessons:
        assert 5 <= lesson.minutes <= 120, f"{lesson.file}: Time to learn {lesson.minutes} minutes?"
        assert lesson.title and lesson.teaches


def test_navigation_cells_are_in_sync():
    stale = add_navigation.out_of_sync()
    assert not stale, f"navigation out of date in {[p.name for p in stale]}: run `make navigation`"


def test_index_notebook_and_agenda_are_in_sync():
    lessons = course()
    targets = build_index.targets(lessons, readme=ROOT / "no-readme-here.md")
    index, _, guide = targets
    assert not index.stale, "notebooks/index.ipynb is out of date: run `make navigation`"
    assert guide.new_text is not None, "docs/instructor-guide.md lost its <!-- agenda:start/end --> markers"
    assert not guide.stale, "the agenda in docs/instructor-guide.md is out of date: run `make navigation`"


def test_readme_course_table_is_in_sync():
    readme = ROOT / "README.md"
    if not readme.exists() or build_index.COURSE_MARKERS[0] not in readme.read_text(encoding="utf-8"):
        pytest.skip("README.md has no <!-- course:start --> / <!-- course:end --> markers")
    target = build_index.targets(course(), guide=ROOT / "no-guide-here.md")[1]
    assert target.new_text is not None
    assert not target.stale, "the course table in README.md is out of date: run `make navigation`"


def test_index_lists_every_notebook_with_its_minutes_and_total():
    nb = nbformat.read(ROOT / "notebooks" / "index.ipynb", as_version=4)
    text = "\n".join(cell.source for cell in nb.cells)
    lessons = course()
    for lesson in lessons:
        assert f"]({lesson.file}) |" in text and f"| {lesson.minutes} |" in text
    assert f"**{sum(lesson.minutes for lesson in lessons)}**" in text
    assert "Half day (3.5 h)" in text and "Full day" in text


# --- navigation, on copies ----------------------------------------------------------------------
def make_notebook(path: Path, number: str, title: str, minutes: int = 20) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell(f"# {number} · {title}\n\nWhat {title.lower()} teaches.\nSecond line."),
        nbformat.v4.new_markdown_cell(f"## Overview\n1. a\n\n**Time to learn: {minutes} minutes**"),
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_markdown_cell("## Summary\n- a point"),
    ]
    nbformat.write(nb, path)


def navigation(path: Path) -> tuple[str, str]:
    nb = nbformat.read(path, as_version=4)
    return nb.cells[0].source, nb.cells[-1].source


def test_navigation_is_written_idempotently_and_follows_added_and_removed_notebooks(tmp_path):
    for number, title in (("00", "Setup"), ("01", "Basics"), ("02", "Data")):
        make_notebook(tmp_path / f"{number}_{title.lower()}.ipynb", number, title)
    originals = {p.name: nbformat.read(p, as_version=4).cells for p in tmp_path.glob("*.ipynb")}

    assert len(add_navigation.out_of_sync(tmp_path)) == 3
    assert add_navigation.main(["--check", "--notebooks", str(tmp_path)]) == 1
    assert len(add_navigation.write(tmp_path)) == 3
    assert add_navigation.write(tmp_path) == [], "a second run must change nothing"
    assert add_navigation.main(["--check", "--notebooks", str(tmp_path)]) == 0

    top, bottom = navigation(tmp_path / "01_basics.ipynb")
    assert top == bottom == ("< [00 · Setup](00_setup.ipynb) | [Index](index.ipynb) | [02 · Data](02_data.ipynb) >")
    assert navigation(tmp_path / "00_setup.ipynb")[0] == "[Index](index.ipynb) | [01 · Basics](01_basics.ipynb) >"
    assert navigation(tmp_path / "02_data.ipynb")[0] == "< [01 · Basics](01_basics.ipynb) | [Index](index.ipynb)"
    nb = nbformat.read(tmp_path / "01_basics.ipynb", as_version=4)
    for cell in (nb.cells[0], nb.cells[-1]):
        assert cell.cell_type == "markdown" and "outputs" not in cell
        assert cell.metadata["pgmlkit"] == "navigation" and cell.metadata["tags"] == ["navigation"]
    assert [c.source for c in nb.cells[1:-1]] == [c.source for c in originals["01_basics.ipynb"]]

    # A notebook removed: its neighbours now point at each other. One added: it joins the chain.
    (tmp_path / "01_basics.ipynb").unlink()
    make_notebook(tmp_path / "03_models.ipynb", "03", "Models")
    assert {p.name for p in add_navigation.out_of_sync(tmp_path)} == {"00_setup.ipynb", "02_data.ipynb", "03_models.ipynb"}
    add_navigation.write(tmp_path)
    assert navigation(tmp_path / "00_setup.ipynb")[0] == "[Index](index.ipynb) | [02 · Data](02_data.ipynb) >"
    assert navigation(tmp_path / "02_data.ipynb")[1] == (
        "< [00 · Setup](00_setup.ipynb) | [Index](index.ipynb) | [03 · Models](03_models.ipynb) >")
    nb = nbformat.read(tmp_path / "02_data.ipynb", as_version=4)
    assert sum(c.metadata.get("pgmlkit") == "navigation" for c in nb.cells) == 2


def test_a_notebook_without_its_title_or_time_is_named(tmp_path):
    make_notebook(tmp_path / "00_setup.ipynb", "00", "Setup")
    nb = nbformat.read(tmp_path / "00_setup.ipynb", as_version=4)
    nb.cells[1].source = "## Overview\nno time given"
    nbformat.write(nb, tmp_path / "00_setup.ipynb")
    with pytest.raises(CourseError, match=r"00_setup.ipynb: no '\*\*Time to learn: N minutes\*\*' line"):
        course(tmp_path)
    make_notebook(tmp_path / "00_setup.ipynb", "01", "Setup")
    with pytest.raises(CourseError, match="the title says 01 but the file name says 00"):
        course(tmp_path)


# --- index and agenda ---------------------------------------------------------------------------
def lessons_of(*minutes: int) -> list[Lesson]:
    return [Lesson(f"{i:02d}", f"{i:02d}_x.ipynb", f"Topic {i}", m, f"teaches {i}") for i, m in enumerate(minutes)]


def test_half_day_fits_three_and_a_half_hours_and_full_day_has_everything():
    lessons = lessons_of(10, 25, 20, 30, 30, 35, 30, 30, 40, 35, 30)
    core, later = build_index.half_day(lessons)
    assert core + later == lessons and core and later
    assert build_index.total(build_index.agenda(core, full_day=False)) <= build_index.HALF_DAY_MINUTES
    assert build_index.total(build_index.agenda(core + later[:1], full_day=False)) > build_index.HALF_DAY_MINUTES
    full = build_index.agenda(lessons, full_day=True)
    assert [s.lesson for s in full if s.lesson] == lessons
    assert sum(s.what == "Lunch" for s in full) == 1
    for a, b in zip(full, full[1:]):
        assert a.start + a.minutes == b.start, "the agenda has a gap or an overlap"
    block = 0
    for slot in full:
        block = 0 if slot.lesson is None and slot.what in ("Break", "Lunch") else block + slot.minutes
        assert block <= build_index.MAX_BLOCK + 40, "a block of lessons runs far past the break rule"


def test_readme_markers_are_the_only_part_rewritten(tmp_path):
    readme = tmp_path / "README.md"
    before, after = "# Title\n\nIntro.\n\n", "\n## Later\nText that stays.\n"
    readme.write_text(before + "<!-- course:start -->\nold table\n<!-- course:end -->" + after)
    lessons = lessons_of(10, 25)
    target = build_index.targets(lessons, index=tmp_path / "index.ipynb", readme=readme, guide=tmp_path / "g.md")[1]
    assert target.stale
    assert target.new_text.startswith(before + "<!-- course:start -->\n")
    assert target.new_text.endswith("<!-- course:end -->" + after)
    assert "old table" not in target.new_text and "[Topic 1](notebooks/01_x.ipynb)" in target.new_text
    readme.write_text(target.new_text)
    assert not build_index.targets(lessons, index=tmp_path / "index.ipynb", readme=readme, guide=tmp_path / "g.md")[1].stale
    readme.write_text("no markers\n")
    assert build_index.targets(lessons, index=tmp_path / "i.ipynb", readme=readme, guide=tmp_path / "g.md")[1].new_text is None


# --- slides and HTML, on a copy with an instructor cell -----------------------------------------
@pytest.fixture(scope="module")
def course_copy(tmp_path_factory):
    """notebooks/00 copied (with its solutions), navigation added, plus instructor cells with a sentinel."""
    folder = tmp_path_factory.mktemp("notebooks")
    source = notebook_paths()[0]
    shutil.copy(source, folder / source.name)
    if (ROOT / "notebooks" / "solutions").exists():
        shutil.copytree(ROOT / "notebooks" / "solutions", folder / "solutions")
    add_navigation.write(folder)
    path = folder / source.name
    nb = nbformat.read(path, as_version=4)
    note = nbformat.v4.new_markdown_cell(f"**Instructor:** {SENTINEL}")
    code = nbformat.v4.new_code_cell(f"print('{SENTINEL}')")
    for cell in (note, code):
        cell.metadata["tags"] = ["instructor"]
    nb.cells[3:3] = [note, code]
    nbformat.write(nb, path)
    (folder / "index.ipynb").write_text(build_index.index_text(course(folder)))
    return path


def offline() -> bool:
    """Can the pinned reveal.js etc. be had? (cached in build/vendor, or fetched now with npm)

    No npm, or no registry: the pages are built with --cdn and the offline checks are skipped. A tarball
    that does not match its pinned sha512 is not a reason to skip: that fails."""
    try:
        for package in web_assets.PACKAGES.values():
            web_assets.fetch(package)
    except web_assets.FetchError:
        return False
    return True


def expected_sections(path: Path) -> int:
    """reveal.js sections: two per slide (title and each `## `), one more per sub-slide (`### `, an exercise)."""
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "markdown" and c.metadata.get("pgmlkit") != "navigation"
             and "instructor" not in c.metadata.get("tags", [])]
    slides = sum(line.startswith(("# ", "## ")) for c in cells for line in c.source.splitlines())
    subslides = sum(c.source.lstrip().startswith(("### ", "**Exercise ")) for c in cells)
    return 2 * slides + subslides


def test_slides_leave_out_instructor_cells_and_load_nothing_from_the_network(course_copy, tmp_path):
    before = course_copy.read_text()
    cdn = not offline()
    [deck] = build_slides.build([course_copy], tmp_path, cdn=cdn)
    html = deck.read_text()
    assert deck.name == course_copy.stem + ".slides.html"
    assert SENTINEL not in html
    assert "[Index](index" not in html and "index.slides.html" not in html, "navigation cells belong in notebooks only"
    assert "Reveal.initialize" in html
    # A slide per title/## heading (cells holding several ## sections are split), a sub-slide per ###/exercise.
    assert html.count("<section") == expected_sections(course_copy)
    assert course_copy.read_text() == before, "the slides must not write slideshow metadata into the notebook"
    if cdn:
        pytest.skip("no npm and no cached build/vendor: built with --cdn, offline check skipped")
    external = re.findall(r'<(?:script|link)[^>]+(?:src|href)="(https?://[^"]+)"', html)
    assert not external, f"slides load from the network: {external}"
    for url in re.findall(r'(?:src|href)="(_assets/[^"?]+)', html):
        assert (tmp_path / url).exists(), f"missing offline asset {url}"
    assert (tmp_path / "_assets/reveal.js/dist/reveal.js").exists()


def test_speaker_notes_keep_instructor_cells_as_notes(course_copy, tmp_path):
    [deck] = build_slides.build([course_copy], tmp_path, cdn=True, speaker_notes=True)
    html = deck.read_text()
    notes = re.findall(r'<aside class="notes">(.*?)</aside>', html, re.DOTALL)
    assert any(SENTINEL in note for note in notes)
    assert html.count(SENTINEL) == sum(note.count(SENTINEL) for note in notes)


def test_html_pages_keep_outputs_and_navigation_but_not_instructor_cells(course_copy, tmp_path):
    cdn = not offline()
    pages = build_html.build([course_copy], tmp_path, cdn=cdn, index=course_copy.parent / "index.ipynb")
    assert [p.name for p in pages] == ["index.html", course_copy.stem + ".html"]
    page = pages[1].read_text()
    assert SENTINEL not in page
    assert '<a href="index.html">Index</a>' in page, "navigation links must point at the .html pages"
    assert ".ipynb\"" not in page
    nb = nbformat.read(course_copy, as_version=4)
    stored = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "stream" and "[ OK ]" in o.text]
    assert stored and "[ OK ]" in page, "stored outputs must be in the page"
    loads = sum("%load solutions/" in c.source for c in nb.cells)
    assert page.count('<details class="kit-solution">') == loads
    index = pages[0].read_text()
    assert f'href="{course_copy.stem}.html"' in index
    if not cdn:
        assert not re.findall(r'<(?:script|link)[^>]+(?:src|href)="https?://', page)


# --- troubleshooting ----------------------------------------------------------------------------
def test_troubleshooting_covers_every_failure_message():
    messages = fail_messages.all_messages()
    sources = {m.source.split(":")[0] for m in messages}
    assert len(messages) >= 20 and {"scripts/db.sh", "scripts/native_db.sh", "src/pgmlkit/check.py"} <= sources
    gaps = fail_messages.missing()
    assert not gaps, "docs/troubleshooting.md lacks (cause + fix for each):\n" + "\n".join(
        f"  [{part}] {message}" for message, part in gaps)


def test_a_new_failure_message_is_noticed(tmp_path):
    script = tmp_path / "new.sh"
    script.write_text('#!/bin/bash\n# fail "in a comment" "ignored"\n'
                      'fail "Widget $name exploded: ${out##*: } ($(date "+%F"))." \\\n'
                      '     "Run \\`make widget\\` again."\n')
    [message] = fail_messages.script_messages(script)
    assert message.cause == ("Widget ", None, " exploded: ", None, " (", None, ").")
    assert message.fix == ("Run `make widget` again.",)
    assert fail_messages.covered(message.cause, "[FAIL] Widget <name> exploded: <why> (<date>).")
    doc = (ROOT / "docs" / "troubleshooting.md").read_text()
    assert not fail_messages.covered(message.cause, doc)


# --- ports come from kit.env ------------------------------------------------------------------------
def hard_coded_ports(text: str, ports: set[str]) -> list[str]:
    """Lines of Python or shell code (comments dropped) that spell one of the kit's ports as a number."""
    pattern = re.compile(r"(?<![\d.])(" + "|".join(sorted(ports)) + r")(?![\d.])")
    return [line.strip() for line in text.splitlines() if pattern.search(line.split("#", 1)[0])]


def test_code_reads_the_kit_ports_from_kit_env():
    """.ci/run gives each run free ports; code that spells kit.env's ports finds a server only where one happens to run.

    (CI once failed notebook 10 this way: it reached the replica on kit.env's fixed port, which only a developer's
    machine had running.) Scripts take the ports from kit.env via common.sh, Python via pgmlkit.kit_settings().
    test_stack_consistency.py is left out: its mutations rewrite the Docker files' port text on purpose.
    """
    settings = {key: value for key, _, value in (line.partition("=") for line in (ROOT / "kit.env").read_text().splitlines())
                if key.endswith("_PORT")}
    ports = {settings["KIT_PORT"], settings["REPLICA_PORT"]}
    found = {}
    for path in [*ROOT.glob("notebooks/*.ipynb"), *ROOT.glob("tests/*.py"), *ROOT.glob("src/**/*.py"),
                 *ROOT.glob("tools/*.py"), *ROOT.glob("scripts/*.sh"), ROOT / ".ci" / "run"]:
        if path.name == "test_stack_consistency.py":
            continue
        if path.suffix == ".ipynb":
            text = "\n".join(cell.source for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code")
        else:
            text = path.read_text()
        if lines := hard_coded_ports(text, ports):
            found[str(path.relative_to(ROOT))] = lines
    assert not found, f"ports {sorted(ports)} spelled out instead of read from kit.env: {found}"


def test_a_hard_coded_port_is_noticed():
    ports = {"6100", "6101"}
    assert hard_coded_ports('url.replace(":6100", ":6101")', ports)
    assert hard_coded_ports("psql -p 6101 -c 'SELECT 1'", ports)
    assert not hard_coded_ports("assert diag.sqlstate == '61010'   # port 6101 in a comment", ports)
    assert not hard_coded_ports("REPLICA_PORT = int(settings['REPLICA_PORT'])", ports)


# --- every block of sql/NN is run by notebook NN ------------------------------------------------------
BLOCK = re.compile(r"^-- @block (\w+)", re.M)
RUN_BLOCK = re.compile(r"pgmlkit\.run_sql_block\(\s*[\"']([\w.]+\.sql)[\"']\s*,\s*[\"'](\w+)[\"']")


def unrun_blocks(notebook: Path, sql_dir: Path) -> list[str]:
    """Blocks of the notebook's own sql/NN_*.sql that it never runs: neither the whole file (run_sql_file
    in a cell naming the file) nor the block (run_sql_block). Such a block is taught but not created."""
    cells = [c.source for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "code"]
    missing = []
    for sql in sorted(sql_dir.glob(f"{notebook.name[:2]}_*.sql")):
        if any("run_sql_file(" in c and re.search(rf"[\"']{re.escape(sql.name)}[\"']", c) for c in cells):
            continue
        ran = {block for c in cells for file, block in RUN_BLOCK.findall(c) if file == sql.name}
        missing += [f"{sql.name}:{block}" for block in BLOCK.findall(sql.read_text()) if block not in ran]
    return missing


def test_each_notebook_runs_every_block_of_its_sql_file():
    """sql/ is the single source: a block the notebook shows or relies on must also be created by it
    (notebook 04 once missed three blocks of sql/04 and failed on a fresh database)."""
    gaps = {p.name: unrun_blocks(p, ROOT / "sql") for p in notebook_paths()}
    assert not {name: blocks for name, blocks in gaps.items() if blocks}, gaps


def test_an_unrun_block_is_noticed(tmp_path):
    (tmp_path / "sql").mkdir()
    (tmp_path / "sql" / "04_x.sql").write_text("-- @block first\nSELECT 1;\n-- @block second\nSELECT 2;\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('pgmlkit.run_sql_block("04_x.sql", "first")'),
                                         nbformat.v4.new_code_cell('pgmlkit.show_sql("04_x.sql", "second")')])
    nbformat.write(nb, tmp_path / "04_x.ipynb")
    assert unrun_blocks(tmp_path / "04_x.ipynb", tmp_path / "sql") == ["04_x.sql:second"]
    nb.cells.append(nbformat.v4.new_code_cell('for name in ("04_x.sql",):\n    pgmlkit.run_sql_file(name)'))
    nbformat.write(nb, tmp_path / "04_x.ipynb")
    assert unrun_blocks(tmp_path / "04_x.ipynb", tmp_path / "sql") == []
