"""`make bench`: the talk's trade-offs, measured on this machine, written to build/bench.json.

    python -m pgmlkit.bench [--quick] [--output build/bench.json] [--only STEP ...] [--strict]

What a run does (progress on stderr; the table and the targets on stdout at the end):
  1. applies sql/02, 04, 05, 06 and 08 (all idempotent) and checks that every function it measures
     exists — a missing one stops the run and names the file that should define it;
  2. loads sample data (load_sample_customers) and trains the models it measures
     (linear 'purchase_predictor', a 100-tree random forest 'purchase_rf', and one model per algorithm);
  3. checks that the fast paths predict what scikit-learn predicts (a disagreement stops the run);
  4. measures: one warm-up run, then N timed runs of each; the result is their median.
Per-row paths are timed as one statement that runs on the server, SELECT sum(f(...)) FROM
(SELECT ... LIMIT n), so a client round trip per row is not in the number — except for
client_roundtrip and http_* whose point is exactly that.

`make bench` (scripts/bench.sh) runs it in a database of its own, made fresh and dropped afterwards,
because it replaces customer_data's rows and deploys new versions of purchase_predictor and
purchase_rf. Run directly against another database, it restores the prediction trigger mode at the
end and re-applies sql/09 if the database had it (re-applying sql/04-06 resets what it hardened).
Steps (--only takes these names): schema, data, correctness (always run), per_row, batch, forest,
inserts, cold_starts, client, compiled, models, training. The code: harness.py (timing, Result,
targets), steps.py (the steps), report.py (table, targets text, JSON), compiled.py (sql/10), cli.py.
Exit status: 0 done (targets may be missed: they are reported), 1 a check failed (or a target
missed with --strict), 2 a required function is missing.
"""
from __future__ import annotations

from . import compiled
from .cli import main
from .harness import (FULL, QUICK, REQUIRED_RESULTS, SESSION_SETTINGS, BenchError, Result, Sizes,
                      backend_memory_after, batch_sql, by_name, cold_start, configure_session, evaluate_targets,
                      missing_results, per_row_sql, time_sql, timed_runs)
from .report import format_table, format_targets
from .steps import ALGORITHMS, REQUIRED_FUNCTIONS, SQL_FILES, STEP_NAMES, STEPS, Bench, missing_functions, run_benchmark

__all__ = ["ALGORITHMS", "FULL", "QUICK", "REQUIRED_FUNCTIONS", "REQUIRED_RESULTS", "SESSION_SETTINGS", "SQL_FILES",
           "STEPS", "STEP_NAMES", "Bench", "BenchError", "Result", "Sizes", "backend_memory_after", "batch_sql",
           "by_name", "cold_start", "compiled", "configure_session", "evaluate_targets", "format_table",
           "format_targets", "main", "missing_functions", "missing_results", "per_row_sql", "run_benchmark",
           "time_sql", "timed_runs"]
