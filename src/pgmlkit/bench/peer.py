"""A peer beside sql/10's compiler: the same deployed models compiled to SQL by orbital, timed the same way.

    from pgmlkit.bench import peer
    results, findings = peer.run(conn, models_on_disk, sizes)   # findings: max_abs_diff, errors

orbital (requirements/orbital.txt) lives in build/orbital-venv, which scripts/orbital_env.sh builds; the
kit's own environments never see it. Its SQL reads a table; here that table is a CTE named like it, put
in front of orbital's own WITH list, so the same text runs on the bench's rows and on one row at a time.

Results:
  orbital_sql_row       the deployed linear model (purchase_predictor): µs per row of orbital's SQL
  orbital_sql_rf_row    the deployed forest (purchase_rf): µs per row of orbital's SQL
and, in bench.json's environment.prediction_checks_max_abs_diff.orbital, max_abs_diff per algorithm (the
largest |orbital − scikit-learn| on the check rows) and errors: for a model orbital cannot compile, or whose
SQL PostgreSQL refuses, the reason instead of a time.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import psycopg

from ..config import KIT_ROOT
from .harness import Result, time_sql

ENVIRONMENT = KIT_ROOT / "scripts" / "orbital_env.sh"
EXPORT = Path(__file__).with_name("orbital_export.py")
TABLE = "orbital_input"
FEATURES = ("age", "income", "credit_score")
MODELS = {"linear": ("purchase_predictor", "orbital_sql_row"), "random_forest": ("purchase_rf", "orbital_sql_rf_row")}
BENCH_ROWS = ("SELECT age::float8 AS age, income::float8 AS income, credit_score::float8 AS credit_score"
              " FROM customer_data LIMIT %s")


def with_input(sql: str, rows_sql: str) -> str:
    """orbital's query with its input table defined in front: WITH "orbital_input" AS (rows_sql), ..."""
    sql = sql.replace("%", "%%")                      # psycopg placeholders: only ours
    cte = f'"{TABLE}" AS ({rows_sql})'
    return f"WITH {cte}, {sql[len('WITH '):]}" if sql.startswith("WITH ") else f"WITH {cte} {sql}"


def export(models_on_disk: dict[str, str]) -> dict:
    """{model name: {"sql": ...} | {"error": ...}} from orbital, in its own environment."""
    built = subprocess.run([str(ENVIRONMENT)], capture_output=True, text=True)
    if built.returncode != 0:
        raise RuntimeError(f"scripts/orbital_env.sh failed:\n{built.stderr[-2000:]}")
    python = built.stdout.strip().splitlines()[-1]
    request = {"models": models_on_disk, "features": list(FEATURES), "table": TABLE}
    done = subprocess.run([python, str(EXPORT)], input=json.dumps(request), capture_output=True, text=True,
                          timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"orbital_export.py failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


def max_abs_diff(conn, sql: str, model_name: str, n: int) -> float:
    """orbital's SQL on each of the first n rows (by id) against ml_predict_sklearn on the same row."""
    one_row = with_input(sql, "SELECT c.age, c.income, c.credit_score")
    return conn.execute(
        f"SELECT max(abs(o.variable - ml_predict_sklearn(%s, ARRAY[c.age, c.income, c.credit_score])))"
        f"  FROM (SELECT id, age::float8 AS age, income::float8 AS income, credit_score::float8 AS credit_score"
        f"          FROM customer_data ORDER BY id LIMIT %s) AS c"
        f"  CROSS JOIN LATERAL ({one_row}) AS o", [model_name, n]).fetchone()[0]


def run(conn, models_on_disk: dict[str, str], sizes, log=lambda text: print(text, file=sys.stderr)):
    """(results, {"max_abs_diff": {algorithm: ...}, "errors": {algorithm: why orbital's SQL did not run}})."""
    wanted = {name: models_on_disk[name] for name, _ in MODELS.values() if name in models_on_disk}
    exported = export(wanted)
    results, diffs, errors = [], {}, {}
    for algorithm, (model_name, result_name) in MODELS.items():
        answer = exported.get(model_name, {"error": "the bench had not written this model to disk"})
        diffs[algorithm] = None
        if "error" in answer:
            errors[algorithm] = f"orbital could not compile {model_name}: {answer['error']}"
            log(f"  {result_name}: {errors[algorithm]}")
            continue
        rows = sizes.bulk if algorithm == "linear" else sizes.rf_fast
        per_row = f"SELECT sum(o.variable) FROM ({with_input(answer['sql'], BENCH_ROWS)}) AS o"
        try:
            samples = time_sql(conn, per_row, [rows], sizes.repeats, 1)
        except psycopg.Error as error:        # e.g. more select-list entries than PostgreSQL allows
            columns = len(re.findall(r'\sAS\s+"', answer["sql"]))
            errors[algorithm] = (f"PostgreSQL rejects orbital's SQL for {model_name} ({len(answer['sql']):,} bytes, "
                                 f"{columns:,} named columns, compiled in {answer['seconds']:.0f} s): "
                                 f"{str(error).strip().splitlines()[0]}")
            log(f"  {result_name}: {errors[algorithm]}")
            continue
        diffs[algorithm] = max_abs_diff(conn, answer["sql"], model_name, sizes.check)
        results.append(Result(result_name, "orbital", rows, samples,
                              f"{model_name} compiled to SQL by orbital {answer['orbital']}, on the same rows",
                              {"model_name": model_name, "sql_bytes": len(answer["sql"]),
                               "compile_seconds": answer["seconds"], "max_abs_diff": diffs[algorithm],
                               "orbital": answer["orbital"]}))
    return results, {"max_abs_diff": diffs, "errors": errors}
