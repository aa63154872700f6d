"""Exercise checks: `check("05.1", answer)` tells the attendee, in plain words, whether they got it.

Each notebook's checks live in their own module (nb05.py for notebook 05) and register with
@exercise("05.1"). A check gets the attendee's answer and returns (ok, message); it never raises
on a wrong answer, so a notebook with unanswered exercises still runs top to bottom — except under
PGMLKIT_EXERCISES_STRICT=1, which the test run with every solution filled in sets (tools/with_solutions.py):
there a check that is not ✅ raises, so the cell, and nbval, fail.
Solutions live in notebooks/solutions/NN_k.py and are revealed with `%load` (see the notebooks).
"""
from __future__ import annotations

import importlib
import os
import pkgutil
from typing import Any, Callable

CheckResult = tuple[bool, str]
_CHECKS: dict[str, Callable[[Any], CheckResult]] = {}


def exercise(exercise_id: str):
    def register(func: Callable[[Any], CheckResult]):
        _CHECKS[exercise_id] = func
        return func
    return register


def _load_all() -> None:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


def check(exercise_id: str, answer: Any) -> None:
    """Print a ✅ / ❌ line for the attendee, in plain words."""
    _load_all()
    if exercise_id not in _CHECKS:
        raise KeyError(f"No check registered for exercise {exercise_id}")
    if answer is Ellipsis:
        ok, message = False, f"exercise {exercise_id} is unanswered — replace the ... with your answer and run the cell."
    else:
        try:
            ok, message = _CHECKS[exercise_id](answer)
        except Exception as error:  # a broken answer is feedback, not a crash
            ok, message = False, f"your answer raised {type(error).__name__}: {error}"
    print(f"✅ Correct: {message}" if ok else f"❌ Not yet: {message}")
    if not ok and os.environ.get("PGMLKIT_EXERCISES_STRICT") == "1":
        raise AssertionError(f"exercise {exercise_id}: the answer fails its check: {message}")


def registered() -> list[str]:
    _load_all()
    return sorted(_CHECKS)
