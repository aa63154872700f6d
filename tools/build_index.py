"""Generate the course index from the course list (tools/course.py) — in three places.

1. `notebooks/index.ipynb`: the course table (notebook, what it teaches, minutes), the total time and the
   suggested half-day / full-day plans. The whole notebook is generated.
2. `README.md`: the same table, written only between the lines `<!-- course:start -->` and
   `<!-- course:end -->` (the rest of the README is left exactly as it is; no markers, no change).
3. `docs/instructor-guide.md`: the agenda with clock times, between `<!-- agenda:start -->` and
   `<!-- agenda:end -->`.

    python tools/build_index.py            # write what changed
    python tools/build_index.py --check    # exit 1 and name what is out of date
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from course import NOTEBOOKS, ROOT, CourseError, Lesson, course, hours  # noqa: E402

INDEX = NOTEBOOKS / "index.ipynb"
README = ROOT / "README.md"
GUIDE = ROOT / "docs" / "instructor-guide.md"
COURSE_MARKERS = ("<!-- course:start -->", "<!-- course:end -->")
AGENDA_MARKERS = ("<!-- agenda:start -->", "<!-- agenda:end -->")

HALF_DAY_MINUTES = 210          # 3.5 h, breaks included
WELCOME, WRAP_UP, BREAK, LUNCH = 10, 10, 15, 60
MAX_BLOCK = 90                  # minutes of lessons between two breaks
DAY_START = 9 * 60              # 09:00
LUNCH_AFTER = 11 * 60 + 45      # the first break after 11:45 is lunch


# --- agenda -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Slot:
    start: int          # minutes after midnight
    minutes: int
    what: str
    lesson: Lesson | None = None

    @property
    def clock(self) -> str:
        def hm(t: int) -> str:
            return f"{t // 60:02d}:{t % 60:02d}"
        return f"{hm(self.start)}–{hm(self.start + self.minutes)}"


def agenda(lessons: list[Lesson], full_day: bool) -> list[Slot]:
    """Welcome, the lessons in order, breaks, and a wrap-up.

    Full day: a break whenever a block of lessons would pass MAX_BLOCK minutes; the first break after
    11:45 is lunch. Half day: one break, at the lesson boundary nearest the middle (none if it is short).
    """
    if full_day:
        break_before = set()
        block = WELCOME
        for i, lesson in enumerate(lessons):
            if block and block + lesson.minutes > MAX_BLOCK:
                break_before.add(i)
                block = 0
            block += lesson.minutes
    else:
        minutes = [lesson.minutes for lesson in lessons]
        half = (WELCOME + sum(minutes)) / 2
        elapsed = [WELCOME + sum(minutes[:i]) for i in range(1, len(lessons))]
        needs_break = elapsed and WELCOME + sum(minutes) > MAX_BLOCK
        break_before = {1 + min(range(len(elapsed)), key=lambda i: abs(elapsed[i] - half))} if needs_break else set()
    slots = [Slot(DAY_START, WELCOME, "Welcome: the talk's idea in five minutes; `make lab` runs for everyone")]
    clock, lunch_taken = DAY_START + WELCOME, False
    for i, lesson in enumerate(lessons):
        if i in break_before:
            if full_day and not lunch_taken and clock >= LUNCH_AFTER:
                slots.append(Slot(clock, LUNCH, "Lunch"))
                clock, lunch_taken = clock + LUNCH, True
            else:
                slots.append(Slot(clock, BREAK, "Break"))
                clock += BREAK
        slots.append(Slot(clock, lesson.minutes, f"[{lesson.label}]", lesson))
        clock += lesson.minutes
    slots.append(Slot(clock, WRAP_UP, "Wrap-up: questions, what to read next, feedback"))
    return slots


def half_day(lessons: list[Lesson]) -> tuple[list[Lesson], list[Lesson]]:
    """The longest run of notebooks, in course order, whose agenda fits in HALF_DAY_MINUTES."""
    chosen = []
    for lesson in lessons:
        if total(agenda(chosen + [lesson], full_day=False)) > HALF_DAY_MINUTES:
            break
        chosen.append(lesson)
    return chosen, lessons[len(chosen):]


def span(lessons: list[Lesson]) -> str:
    if not lessons:
        return "none"
    return lessons[0].number if len(lessons) == 1 else f"{lessons[0].number}–{lessons[-1].number}"


def total(slots: list[Slot]) -> int:
    return slots[-1].start + slots[-1].minutes - slots[0].start


def minutes_cell(minutes: int) -> str:
    return f"**{minutes}**" + (f" ({hours(minutes)})" if minutes >= 60 else "")


# --- the course table ---------------------------------------------------------------------------
def course_table(lessons: list[Lesson], link_prefix: str) -> str:
    rows = ["| # | Notebook | What it teaches | Minutes |", "| --- | --- | --- | ---: |"]
    for lesson in lessons:
        teaches = lesson.teaches.replace("|", "\\|")
        rows.append(f"| {lesson.number} | [{lesson.title}]({link_prefix}{lesson.file}) | {teaches} | {lesson.minutes} |")
    minutes = sum(lesson.minutes for lesson in lessons)
    rows.append(f"| | **Total** | {len(lessons)} notebooks | {minutes_cell(minutes)} |")
    return "\n".join(rows)


def plans(lessons: list[Lesson], guide_link: str) -> str:
    core, later = half_day(lessons)
    full = agenda(lessons, full_day=True)
    half = agenda(core, full_day=False)
    lines = [
        f"- **Half day (3.5 h)**: notebooks {span(core)} ({hours(sum(l.minutes for l in core))} of lessons, "
        f"{hours(total(half))} with welcome, breaks and wrap-up)"
        + (f"; notebooks {span(later)} are for after the workshop." if later else "."),
        f"- **Full day**: all {len(lessons)} notebooks ({hours(sum(l.minutes for l in lessons))} of lessons, "
        f"{hours(total(full))} with breaks and lunch).",
        f"- Agendas with clock times, talking points and the usual sticking points: [{guide_link.rsplit('/', 1)[-1]}]({guide_link}).",
    ]
    return "\n".join(lines)


def readme_section(lessons: list[Lesson]) -> str:
    return "\n".join([
        "<!-- Generated by tools/build_index.py from the notebooks' titles and 'Time to learn' lines: "
        "edit the notebooks, then run `make navigation`. -->",
        course_table(lessons, "notebooks/"),
        "",
        plans(lessons, "docs/instructor-guide.md"),
    ])


def agenda_section(lessons: list[Lesson]) -> str:
    core, later = half_day(lessons)
    out = ["<!-- Generated by tools/build_index.py from the notebooks' 'Time to learn' lines: "
           "run `make navigation` after changing a notebook. -->"]
    for title, slots, note in [
        (f"Half day (3.5 h): notebooks {span(core)}", agenda(core, full_day=False),
         f"Notebooks {span(later)} are for after the workshop: point attendees to `make html` or the notebooks themselves."
         if later else "Every notebook fits."),
        (f"Full day: notebooks {span(lessons)}", agenda(lessons, full_day=True), ""),
    ]:
        out += ["", f"### {title}", "", "| Time | Session | Minutes |", "| --- | --- | ---: |"]
        for slot in slots:
            what = f"[{slot.lesson.label}](../notebooks/{slot.lesson.file})" if slot.lesson else slot.what
            out.append(f"| {slot.clock} | {what} | {slot.minutes} |")
        out.append(f"| | **Total** | {minutes_cell(total(slots))} |")
        if note:
            out += ["", note]
    out += ["", "Start later or earlier by shifting every time; the order and the breaks stay."]
    return "\n".join(out)


# --- index.ipynb --------------------------------------------------------------------------------
def index_notebook(lessons: list[Lesson]):
    intro = (
        "# pg-ml-kit · Course index\n\n"
        "Real-time machine learning **inside PostgreSQL** with PL/Python: train a scikit-learn model where the data "
        "lives, store it in a table, predict in `SELECT` queries and triggers, retrain it, and measure what each "
        "choice costs.\n\n"
        "**How to work through it**\n"
        "1. Open the notebooks in order; each one starts with a setup cell and a *Reset to the start of this "
        "notebook* cell, so you can also start at any notebook.\n"
        "2. Run every cell from the top (Shift+Enter). The kernel must be **Python 3.11 (pg-ml-kit)**.\n"
        "3. Each notebook ends with exercises: a check cell tells you whether your answer is right; if you are "
        "stuck, the cell below it loads the solution.\n"
        "4. Something broke? `make db-reset` in a terminal starts the whole course over; "
        "[docs/troubleshooting.md](../docs/troubleshooting.md) lists every setup error with its fix."
    )
    table = "## The course\n\n" + course_table(lessons, "")
    schedule = "## Suggested schedules\n\n" + plans(lessons, "../docs/instructor-guide.md")
    footer = ("<!-- Generated by tools/build_index.py from the notebooks' titles and 'Time to learn' lines; "
              "edits here are overwritten: change the notebooks, then run `make navigation`. -->")
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3.11 (pg-ml-kit)", "language": "python", "name": "pg-ml-kit"},
        "language_info": {"name": "python"},
    }
    nb.cells = [nbformat.v4.new_markdown_cell(text) for text in (intro, table, schedule, footer)]
    for cell, cell_id in zip(nb.cells, ("index-title", "index-course", "index-schedules", "index-generated")):
        cell.id = cell_id
    return nb


def index_text(lessons: list[Lesson]) -> str:
    return nbformat.writes(index_notebook(lessons)) + "\n"


def index_in_sync(path: Path, lessons: list[Lesson]) -> bool:
    """Compares the cells only: JupyterLab may add metadata when someone opens and saves the index."""
    if not path.exists():
        return False
    current = nbformat.read(path, as_version=4)
    expected = index_notebook(lessons)
    return [(c.cell_type, c.source) for c in current.cells] == [(c.cell_type, c.source) for c in expected.cells]


# --- marker sections ----------------------------------------------------------------------------
def replace_between(text: str, markers: tuple[str, str], body: str) -> str | None:
    """text with everything between the two marker lines replaced by body; None if the markers are absent."""
    start, end = markers
    pattern = re.compile(rf"({re.escape(start)}[^\n]*\n)(.*?)(^[^\S\n]*{re.escape(end)})", re.DOTALL | re.MULTILINE)
    if not pattern.search(text):
        return None
    return pattern.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(3), text, count=1)


@dataclass
class Target:
    path: Path
    new_text: str | None    # None: nothing to write (markers absent)
    stale: bool
    note: str = ""


def targets(lessons: list[Lesson], index: Path = INDEX, readme: Path = README, guide: Path = GUIDE) -> list[Target]:
    result = [Target(index, index_text(lessons), not index_in_sync(index, lessons))]
    for path, markers, body in ((readme, COURSE_MARKERS, readme_section(lessons)),
                                (guide, AGENDA_MARKERS, agenda_section(lessons))):
        if not path.exists():
            result.append(Target(path, None, False, f"{path.name} does not exist"))
            continue
        text = path.read_text(encoding="utf-8")
        new = replace_between(text, markers, body)
        if new is None:
            result.append(Target(path, None, False, f"no {markers[0]} … {markers[1]} lines in {path.name}"))
        else:
            result.append(Target(path, new, new != text))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if something is out of date")
    parser.add_argument("--notebooks", type=Path, default=NOTEBOOKS, help="folder of NN_*.ipynb (default: notebooks/)")
    parser.add_argument("--index", type=Path, default=None, help="default: index.ipynb in the notebooks folder")
    parser.add_argument("--readme", type=Path, default=README, help="default: README.md")
    parser.add_argument("--guide", type=Path, default=GUIDE, help="default: docs/instructor-guide.md")
    args = parser.parse_args(argv)
    try:
        lessons = course(args.notebooks)
    except CourseError as error:
        print(f"[FAIL] {error}", file=sys.stderr)
        return 1
    stale = 0
    for target in targets(lessons, args.index or args.notebooks / INDEX.name, args.readme, args.guide):
        name = target.path.relative_to(ROOT) if target.path.resolve().is_relative_to(ROOT) else target.path
        if target.note:
            print(f"[SKIP] {name}: {target.note}")
        elif not target.stale:
            print(f"[ OK ] {name} in sync")
        elif args.check:
            print(f"[FAIL] {name} is out of date with the notebooks", file=sys.stderr)
            stale += 1
        else:
            target.path.write_text(target.new_text, encoding="utf-8")
            print(f"written: {name}")
    if stale:
        print("       Fix: python tools/build_index.py (or make navigation)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
