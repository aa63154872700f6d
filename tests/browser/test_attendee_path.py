"""The attendee's path and the instructor's, in a real browser (make test-browser; part of make test).

Debian's chromium, driven by Playwright, against the real `make lab` server (scripts/lab.sh) and the real
database: the URL lab.sh prints, the file browser, the stored outputs cleared, Run All from the menu, and
assertions on what is *rendered* — the setup check's [ OK ] lines, a chart as an image, a %sql table with the talk's columns,
an exercise's hint and its %load solution. Then the instructor's side: the reveal.js slides paged through
with the keyboard, and the HTML pages' links. A screenshot of every step goes to build/e2e/.
scripts/test_browser.sh runs this on a database of its own (<KIT_DB>_browser), reset first.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import nbformat
import pytest

playwright_sync = pytest.importorskip("playwright.sync_api", reason="scripts/browser_env.sh installs Playwright")

KIT_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = KIT_ROOT / "notebooks"
SHOTS = KIT_ROOT / "build" / "e2e"
CHROMIUM = os.environ.get("KIT_CHROMIUM", "/usr/bin/chromium")
RUN_ALL_TIMEOUT_S = 900          # notebook 05 trains and times forests; a busy CI machine is slow
STDERR = "application/vnd.jupyter.stderr"   # JupyterLab renders tracebacks (and stderr) with this type


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


@pytest.fixture(scope="module")
def lab_url(tmp_path_factory):
    """`make lab`'s server on a free port; yields the URL it prints (token included)."""
    workspaces = tmp_path_factory.mktemp("workspaces")     # a first visit: no layout restored from earlier
    # Autosave off, for the test only: a notebook that runs longer than its 2-minute interval must not
    # overwrite the course's notebooks (and their stored outputs) with this run's.
    settings = tmp_path_factory.mktemp("lab-settings")
    (settings / "@jupyterlab" / "docmanager-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "docmanager-extension" / "plugin.jupyterlab-settings").write_text('{"autosave": false}')
    env = {**os.environ, "KIT_LAB_PORT": str(free_port()), "JUPYTERLAB_WORKSPACES_DIR": str(workspaces),
           "JUPYTERLAB_SETTINGS_DIR": str(settings)}
    before = {path: path.read_bytes() for path in NOTEBOOKS.rglob("*.ipynb")}
    process = subprocess.Popen([str(KIT_ROOT / "scripts" / "lab.sh")], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    printed, url = "", None
    try:
        deadline = time.time() + 60
        while url is None and time.time() < deadline:
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                pytest.fail("lab.sh exited early:\n" + printed)
            printed += line
            match = re.search(r"(http://127\.0\.0\.1:\d+/lab\?token=\w+)", line)
            url = match and match.group(1)
        assert url, "lab.sh printed no URL within 60 s:\n" + printed
        subprocess.Popen(["cat"], stdin=process.stdout, stdout=subprocess.DEVNULL)   # keep its pipe drained
        status = url.replace("/lab?", "/api/status?")
        while True:                              # lab.sh prints the URL a moment before the server listens
            try:
                urllib.request.urlopen(status, timeout=2).close()
                break
            except OSError:
                assert time.time() < deadline + 60, f"{url} did not answer within 60 s of being printed"
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    changed = [path.name for path, data in before.items() if path.read_bytes() != data]
    assert not changed, f"the browser session wrote to the course's notebooks: {changed}"


@pytest.fixture(scope="module")
def browser():
    with playwright_sync.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser, lab_url, request):
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    context.set_default_timeout(60_000)
    tab = context.new_page()
    yield tab
    if getattr(request.node, "call_failed", False):
        shot(tab, f"FAILED-{request.node.name}")
    context.close()
    shut_down_kernels(lab_url)


def shut_down_kernels(lab_url: str) -> None:
    """As closing the laptop would: the next test's notebooks start their own kernels."""
    api = lab_url.replace("/lab?", "/api/kernels?")
    with urllib.request.urlopen(api, timeout=10) as response:
        kernels = json.load(response)
    for kernel in kernels:
        urllib.request.urlopen(urllib.request.Request(api.replace("/api/kernels?", f"/api/kernels/{kernel['id']}?"),
                                                      method="DELETE"), timeout=30).close()


def in_new_workspace(lab_url: str, path: str = "") -> str:
    """The lab URL in a workspace of its own, so no test restores the notebooks an earlier one opened."""
    return lab_url.replace("/lab?", f"/lab/workspaces/e2e-{uuid.uuid4().hex[:8]}{'/tree/' + path if path else ''}?")


# --- JupyterLab, as an attendee uses it -------------------------------------------------------------------

def open_from_file_browser(page, url: str, name: str) -> None:
    page.goto(url)
    page.locator(".jp-DirListing-itemName", has_text=name).first.dblclick()
    notebook_is_ready(page, name)


def notebook_is_ready(page, name: str) -> None:
    page.locator(f".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell").first.wait_for()
    kernel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-KernelName").first
    kernel.wait_for()
    page.wait_for_function("() => !document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) "
                           ".jp-KernelName')?.textContent.includes('No Kernel')")


def kernel_name(page) -> str:
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-KernelName").first.text_content()


def menu(page, top: str, item: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{top}$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(item)}$")).click()


def wait_until_idle(page, timeout_s: float = RUN_ALL_TIMEOUT_S) -> None:
    """Until no cell is queued or running ([*]) and the kernel says idle, twice in a row a second apart."""
    script = """() => {
        const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
        const busy = [...panel.querySelectorAll('.jp-InputPrompt')].some(p => p.textContent.includes('*'));
        const status = panel.querySelector('.jp-Notebook-ExecutionIndicator, [data-status]');
        return !busy && (!status || !['busy', 'starting'].includes(status.getAttribute('data-status')));
    }"""
    deadline = time.time() + timeout_s
    calm = 0
    while calm < 2:
        assert time.time() < deadline, f"the notebook was still running after {timeout_s:.0f} s"
        calm = calm + 1 if page.evaluate(script) else 0
        time.sleep(1)


def clear_outputs(page) -> None:
    """Edit → Clear Outputs of All Cells: from here on, every output and [n] on the page is this run's, not the
    stored notebook's (whose execution counts would otherwise look just like a fresh run's)."""
    menu(page, "Edit", "Clear Outputs of All Cells")
    page.wait_for_function("() => ![...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) "
                           ".jp-InputPrompt')].some(p => /\\[\\d+\\]/.test(p.textContent))")


def run_all(page) -> None:
    clear_outputs(page)
    menu(page, "Run", "Run All Cells")
    page.wait_for_function("() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) "
                           ".jp-InputPrompt')].some(p => /\\[(\\*|\\d+)\\]/.test(p.textContent))")
    wait_until_idle(page)


def rendered_errors(page) -> list[str]:
    """The text of every rendered traceback or stderr output in the open notebook (the stored notebooks have none)."""
    return page.locator(f".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output[data-mime-type='{STDERR}']"
                        ).all_text_contents()


def assert_ran_cleanly(page, notebook: Path) -> None:
    """Every cell rendered and ran ([n] prompts), nothing raised or wrote to stderr."""
    errors = rendered_errors(page)
    assert not errors, f"{notebook.name} rendered error output:\n" + "\n---\n".join(e[-1500:] for e in errors)
    cells = nbformat.read(notebook, as_version=4).cells
    assert page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell").count() == len(cells)
    prompts = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt").all_text_contents()
    never_ran = [i for i, text in enumerate(prompts) if not re.search(r"\[\d+\]", text)]
    assert not never_ran, f"{notebook.name}: code cells {never_ran} did not run: {prompts}"


def stored_output_count(notebook: Path, predicate) -> int:
    return sum(1 for cell in nbformat.read(notebook, as_version=4).cells for out in cell.get("outputs", [])
               if predicate(out))


def source(cell) -> str:
    """A code cell's source as the editor shows it, one CodeMirror line per line."""
    return "\n".join(cell.locator(".cm-line").all_text_contents())


def code_cell(page, starting_with: str):
    """The code cell whose source starts with the given text."""
    cells = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell")
    for i in range(cells.count()):
        if source(cells.nth(i)).startswith(starting_with):
            return cells.nth(i)
    raise AssertionError(f"no code cell starts with {starting_with!r}")


def replace_and_run(page, cell, source: str | None) -> None:
    """Click into the cell, optionally type new source over the old, and run it (Ctrl-Enter)."""
    cell.scroll_into_view_if_needed()
    cell.locator(".cm-content").click()
    if source is not None:
        page.keyboard.press("Control+a")
        page.keyboard.type(source)
    page.keyboard.press("Control+Enter")
    wait_until_idle(page, 120)


def centre(locator) -> None:
    """Scroll the element to the middle of the notebook, for the screenshot."""
    locator.evaluate("element => element.scrollIntoView({block: 'center'})")


def output_text(cell) -> str:
    return "\n".join(cell.locator(".jp-OutputArea-output").all_text_contents())


def test_setup_check_runs_all_from_the_file_browser_with_the_kit_kernel(page, lab_url):
    notebook = NOTEBOOKS / "00_setup_check.ipynb"
    open_from_file_browser(page, lab_url, notebook.name)      # the URL exactly as lab.sh printed it
    shot(page, "01_lab_opened_00_setup_check")
    assert "pg-ml-kit" in kernel_name(page)
    run_all(page)
    assert_ran_cleanly(page, notebook)
    text = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea").all_text_contents()
    for mark in ("[ OK ]", "[FAIL]"):      # the stored notebook's one [FAIL] is its demo of a version mismatch
        rendered = sum(t.count(mark) for t in text)
        stored = sum(str(out.get("text", "")).count(mark) for cell in nbformat.read(notebook, as_version=4).cells
                     for out in cell.get("outputs", []))
        assert rendered == stored, f"{rendered} {mark} lines rendered, the stored notebook has {stored}"
    assert "[ OK ]" in "".join(text)
    centre(page.locator(".jp-OutputArea-output", has_text="[ OK ]").first)
    # scripts/client_env.sh's overrides.json: no "official Jupyter news" prompt in front of 30 attendees
    assert page.get_by_text("official Jupyter news").count() == 0
    shot(page, "02_setup_check_all_ok")


def test_sample_data_chart_renders_and_an_exercise_goes_from_hint_to_solved(page, lab_url):
    notebook = NOTEBOOKS / "02_sample_data.ipynb"
    open_from_file_browser(page, in_new_workspace(lab_url), notebook.name)
    run_all(page)
    assert_ran_cleanly(page, notebook)
    images = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-RenderedImage img")
    stored = stored_output_count(notebook, lambda out: "image/png" in out.get("data", {}))
    assert stored > 0 and images.count() == stored
    for i in range(images.count()):
        size = images.nth(i).evaluate("img => [img.naturalWidth, img.naturalHeight, img.getBoundingClientRect().width]")
        assert min(size) > 0, f"chart {i} rendered with size {size}"
    centre(images.last)
    shot(page, "03_sample_data_chart")

    # Exercise 02.1: a wrong answer shows the hint ...
    answer = code_cell(page, "# Exercise 02.1 — your answer")
    check = code_cell(page, 'pgmlkit.exercises.check("02.1"')
    replace_and_run(page, answer, "answer = 1000")
    replace_and_run(page, check, None)
    assert "❌ Not yet" in output_text(check) and "sample_data_truth()" in output_text(check)
    centre(check)
    shot(page, "04_exercise_hint")
    # ... and the solution, loaded with %load (run once to load, once to run), passes the check.
    solution = code_cell(page, "# %load solutions/02_1.py")
    replace_and_run(page, solution, "%load solutions/02_1.py")
    loaded = source(solution)
    assert "Exercise 02.1 — solution" in loaded, f"%load did not bring the solution in:\n{loaded}"
    replace_and_run(page, solution, None)
    replace_and_run(page, check, None)
    assert "✅ Correct" in output_text(check), output_text(check)
    assert not rendered_errors(page)
    centre(check)
    shot(page, "05_exercise_solved")


def test_prediction_renders_the_talks_sql_result_table(page, lab_url):
    """Up to the talk's query, as an attendee who has reached it would (Run All of 05 is nbval's job: a minute)."""
    notebook = NOTEBOOKS / "05_prediction.ipynb"
    open_from_file_browser(page, in_new_workspace(lab_url), notebook.name)
    stored = nbformat.read(notebook, as_version=4).cells
    code = [c for c in stored if c.cell_type == "code"]
    last = next(i for i, c in enumerate(code) if c.source.startswith("%%sql\nSELECT\n    id,"))
    table_cell = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell").nth(last)
    table_cell.scroll_into_view_if_needed()                       # cells below the fold render when shown
    clear_outputs(page)
    table_cell.locator(".jp-InputPrompt").click()                 # select it (command mode)
    menu(page, "Run", "Run All Above Selected Cell")
    wait_until_idle(page)
    replace_and_run(page, table_cell, None)
    assert source(table_cell).startswith("%%sql\nSELECT\n    id,")
    errors = rendered_errors(page)
    assert not errors, "05_prediction.ipynb rendered error output:\n" + "\n---\n".join(e[-1500:] for e in errors)
    prompts = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt").all_text_contents()
    never_ran = [i for i in range(last + 1) if not re.search(r"\[\d+\]", prompts[i])]
    assert not never_ran, f"code cells up to the talk's query that did not run: {never_ran}"
    headers = table_cell.locator(".jp-RenderedHTMLCommon table th").all_text_contents()
    assert [h.strip() for h in headers] == ["id", "age", "income", "credit_score", "predicted_purchase"]
    rows = table_cell.locator(".jp-RenderedHTMLCommon table tbody tr")
    assert rows.count() == 5
    assert all(cell.strip() for cell in rows.first.locator("td").all_text_contents())
    centre(table_cell.locator(".jp-RenderedHTMLCommon table"))
    shot(page, "06_prediction_sql_table")


def test_a_cell_that_raises_is_caught_by_the_same_checks(page, lab_url):
    """The checks above can fail: a notebook whose cell raises fails assert_ran_cleanly."""
    folder = NOTEBOOKS / f"e2e-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    notebook = folder / "broken.ipynb"
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "pg-ml-kit", "display_name": "pg-ml-kit",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell('print("[ OK ] before")'),
                nbformat.v4.new_code_cell('raise RuntimeError("a cell that raises")'),
                nbformat.v4.new_code_cell('print("after")')]
    nbformat.write(nb, notebook)
    try:
        page.goto(in_new_workspace(lab_url, f"{folder.name}/{notebook.name}"))
        notebook_is_ready(page, notebook.name)
        run_all(page)
        assert any("RuntimeError: a cell that raises" in e for e in rendered_errors(page))
        with pytest.raises(AssertionError, match="rendered error output"):
            assert_ran_cleanly(page, notebook)
        shot(page, "99_broken_notebook_detected")
    finally:
        shutil.rmtree(folder)


# --- The instructor's side: slides and web pages -------------------------------------------------------

def build(tool: str, *args: str) -> None:
    subprocess.run([sys.executable, str(KIT_ROOT / "tools" / tool), *args], check=True, cwd=KIT_ROOT,
                   capture_output=True, text=True)


def test_slides_page_through_with_the_keyboard_without_instructor_cells(page, tmp_path):
    notebook = NOTEBOOKS / "05_prediction.ipynb"
    instructor = [cell.source for cell in nbformat.read(notebook, as_version=4).cells
                  if "instructor" in cell.get("metadata", {}).get("tags", [])]
    assert instructor, "notebook 05 has instructor-tagged cells, so their absence from the slides is a real check"
    build("build_slides.py", str(notebook), "--out", str(tmp_path))
    page.goto((tmp_path / "05_prediction.slides.html").as_uri())
    page.wait_for_selector(".reveal.ready", state="attached")      # reveal.js adds "ready" once initialised
    page.evaluate("window.Reveal = require('_assets/reveal.js/dist/reveal.js')")   # the deck's AMD module
    total = page.evaluate("Reveal.getTotalSlides()")
    assert total > 10
    seen, empty = set(), []
    for step in range(total + 1):
        slide = page.evaluate("""() => { const s = Reveal.getCurrentSlide(), i = Reveal.getIndices();
            return {at: `${i.h}/${i.v || 0}`, text: s.innerText.trim(), images: s.querySelectorAll('img').length,
                    last: Reveal.isLastSlide()}; }""")
        seen.add(slide["at"])
        if not slide["text"] and not slide["images"]:
            empty.append(slide["at"])
        if step in (0, total // 2) or slide["last"]:
            shot(page, f"07_slides_{step:02d}")
        if slide["last"]:
            break
        page.keyboard.press("Space")          # reveal.js: next slide, sub-slides included
    assert len(seen) == total, f"paged through {len(seen)} of {total} slides"
    assert not empty, f"slides without content: {empty}"
    deck = page.locator(".reveal .slides").text_content()
    for source in instructor:
        first_line = source.strip().splitlines()[0]
        assert first_line not in deck, f"an instructor cell is on the slides: {first_line!r}"


def test_html_index_links_to_every_notebook_page_and_no_link_is_broken(page, tmp_path):
    build("build_html.py", "--out", str(tmp_path))
    pages = {tmp_path / "index.html"}
    index_links = None
    broken = []
    visited = set()
    while pages - visited:
        current = sorted(pages - visited)[0]
        visited.add(current)
        page.goto(current.as_uri())
        assert page.title().strip(), f"{current.name} has no title"
        hrefs = page.eval_on_selector_all("a[href]", "links => links.map(a => a.getAttribute('href'))")
        local = [h.split("#")[0] for h in hrefs if not re.match(r"^(https?:|mailto:|#)", h) and h.split("#")[0]]
        targets = {(current.parent / h).resolve() for h in local}
        broken += [f"{current.name} -> {t.name}" for t in targets if not t.exists()]
        if current.name == "index.html":
            index_links = {t.name for t in targets}
            shot(page, "08_html_index")
        pages |= {t for t in targets if t.exists() and t.suffix == ".html"}
    expected = {f"{p.stem}.html" for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")}
    assert expected <= index_links, f"index.html does not link to {sorted(expected - index_links)}"
    assert not broken, f"broken links: {broken}"
