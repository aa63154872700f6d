"""Models compiled to SQL (sql/10), measured the way `make bench` measures everything else.

    from pgmlkit.bench import compiled
    results = compiled.run(conn, quick)            # list of bench.json result dicts

Results:
  compiled_sql_row            the deployed linear model (purchase_predictor) as an inlined SQL expression
  compiled_sql_rf_row         the deployed forest (purchase_rf) as a sum of CASE trees
  compiled_sql_rf_numeric_row the same forest fed NUMERIC/integer columns: the cast is repeated at every
                              tree node, because inlining copies the argument expression into each use
  compiled_sql_rf_statement   the forest's cost per statement, taken apart with EXPLAIN ANALYZE: planning (the
                              inlined body is re-read and folded for every statement) + executor start-up (one
                              row: the expression is prepared) as its time, marginal_us_per_row for each further
                              row; with the full bench also one statement at the server's default JIT settings
  compiled_sql_rf_sweep_<n>   forests of n trees: µs/row of the SQL function and of ml_predict (sql/05's
                              compiled-Python path), SQL text size, planning time, compile time
It expects the data and models the bench's prepare() made (purchase_predictor, purchase_rf); a missing
model is trained. Every compiled function is first checked against scikit-learn (ml_compiled_check).
"""
from __future__ import annotations

import re
import time

from ..db import run_sql_file
from .harness import Result, time_sql

LINEAR_MODEL, FOREST_MODEL = "purchase_predictor", "purchase_rf"
SWEEP_PREFIX = "bench_compiled_rf_"

# Float8 columns first (LIMIT keeps the subquery from being flattened, so each cast runs once per row).
FLOAT_ROWS = ("(SELECT age::float8 AS age, income::float8 AS income, credit_score::float8 AS credit_score"
              " FROM customer_data LIMIT %s) AS s")
RAW_ROWS = "(SELECT age, income, credit_score FROM customer_data LIMIT %s) AS s"


def _ensure_model(conn, name, algorithm, params="{}", train_rows=20000):
    if conn.execute("SELECT 1 FROM ml_models WHERE model_name = %s", [name]).fetchone() is None:
        conn.execute("SELECT train_purchase_model(%s, %s, true, %s, 0.2, 42, %s)", [name, algorithm, params, train_rows])


def deploy_checked(conn, model, function, check_rows=2000) -> dict:
    """ml_deploy_compiled, timed, then proven equal to scikit-learn on check_rows rows."""
    started = time.perf_counter()
    version = conn.execute("SELECT ml_deploy_compiled(%s, %s)", [model, function]).fetchone()[0]
    compile_s = time.perf_counter() - started
    sql_bytes, nodes = conn.execute("SELECT sql_bytes, tree_nodes FROM ml_compiled_functions WHERE function_name = %s",
                                    [function]).fetchone()
    diff = conn.execute("SELECT max_rel_diff FROM ml_compiled_check(%s, %s)", [function, check_rows]).fetchone()[0]
    if not diff <= 1e-9:
        raise RuntimeError(f"{function} disagrees with scikit-learn's predict() of {model} by {diff} (relative)")
    return {"model_name": model, "version": version, "sql_bytes": sql_bytes, "tree_nodes": nodes,
            "compile_seconds": compile_s, "max_rel_diff": diff}


def planning_ms(conn, sql, params) -> float:
    """The planner's time for one statement (inlining + constant folding of the whole expression)."""
    plan = "\n".join(r[0] for r in conn.execute("EXPLAIN (SUMMARY) " + sql, params))
    return float(re.search(r"Planning Time: ([\d.]+) ms", plan).group(1))


def explain_ms(conn, sql, params) -> dict:
    """Planning, execution and JIT milliseconds of one statement, from EXPLAIN (ANALYZE, SUMMARY)."""
    plan = "\n".join(r[0] for r in conn.execute("EXPLAIN (ANALYZE, SUMMARY) " + sql, params))
    jit = re.search(r"Timing: .*Total ([\d.]+) ms", plan)
    return {"planning_ms": float(re.search(r"Planning Time: ([\d.]+) ms", plan).group(1)),
            "execution_ms": float(re.search(r"Execution Time: ([\d.]+) ms", plan).group(1)),
            "jit_ms": float(jit.group(1)) if jit else 0.0}


def statement_costs(conn, function, rows, with_default_jit=False) -> dict:
    """Where a statement calling `function` spends its time: fixed costs, then per row."""
    sql = f"SELECT sum({function}(age, income, credit_score)) FROM {FLOAT_ROWS}"
    one, many = explain_ms(conn, sql, [1]), explain_ms(conn, sql, [rows])
    stored = conn.execute("SELECT length(prosqlbody::text) FROM pg_proc WHERE oid = to_regprocedure(%s)",
                          [f"{function}(float8, float8, float8)"]).fetchone()[0]
    costs = {"planning_ms": many["planning_ms"], "executor_start_ms": one["execution_ms"],
             "marginal_us_per_row": (many["execution_ms"] - one["execution_ms"]) / (rows - 1) * 1000,
             "stored_body_bytes": stored, "rows_measured": rows}
    if with_default_jit:                               # the server's defaults: jit = on, jit_above_cost = 100000, ...
        conn.execute("RESET jit")
        try:
            costs["default_jit"] = explain_ms(conn, sql, [rows])
        finally:
            conn.execute("SET jit = off")
    return costs


def _per_row(conn, name, group, expression, rows_sql, n, repeats, description, **extra) -> Result:
    sql = f"SELECT sum({expression}) FROM {rows_sql}"
    samples = time_sql(conn, sql, [n], repeats)
    return Result(name, group, n, samples, description,
                  {"sql": sql % n, "planning_ms": planning_ms(conn, sql, [n]), **extra})


def sweep(conn, n_trees=(1, 5, 10, 25, 50), max_depth=8, train_rows=20000, rows=5000, repeats=3) -> list[dict]:
    """Forests of growing size, each compiled and measured against ml_predict on the same rows."""
    out = []
    for n in n_trees:
        model, function = f"{SWEEP_PREFIX}{n}", f"{SWEEP_PREFIX}{n}_sql"
        conn.execute("SELECT train_purchase_model(%s, 'random_forest', true, %s, 0.2, 42, %s)",
                     [model, f'{{"n_estimators": {n}, "max_depth": {max_depth}}}', train_rows])
        info = deploy_checked(conn, model, function)
        python = Result("", "", rows, time_sql(conn, f"SELECT sum(ml_predict('{model}', ARRAY[age, income, credit_score]))"
                                                     f" FROM {FLOAT_ROWS}", [rows], repeats), "")
        r = _per_row(conn, f"compiled_sql_rf_sweep_{n}", "compiled_sweep", f"{function}(age, income, credit_score)",
                     FLOAT_ROWS, rows, repeats, f"a {n}-tree forest (max_depth {max_depth}) compiled to SQL",
                     n_trees=n, max_depth=max_depth, ml_predict_us_per_row=python.us_per_row, **info)
        out.append(r.as_json())
    return out


def run(conn, quick: bool) -> list[dict]:
    """The compiled-SQL results for build/bench.json (see the module docstring)."""
    conn.execute("SET jit = off")                      # as the bench: no path gets a JIT compile the others lack
    run_sql_file("10_compiled_models.sql", conn)
    _ensure_model(conn, LINEAR_MODEL, "linear")
    _ensure_model(conn, FOREST_MODEL, "random_forest")
    repeats = 3 if quick else 5
    n_linear, n_rf = (20_000, 2_000) if quick else (500_000, 20_000)
    results = []
    info = deploy_checked(conn, LINEAR_MODEL, "purchase_predictor_sql")
    results.append(_per_row(conn, "compiled_sql_row", "compiled", "purchase_predictor_sql(age, income, credit_score)",
                            FLOAT_ROWS, n_linear, repeats,
                            "the deployed linear model compiled to an inlined SQL expression (sql/10)", **info))
    info = deploy_checked(conn, FOREST_MODEL, "purchase_rf_sql")
    results.append(_per_row(conn, "compiled_sql_rf_row", "compiled", "purchase_rf_sql(age, income, credit_score)",
                            FLOAT_ROWS, n_rf, repeats,
                            "the deployed random forest compiled to a sum of CASE trees (sql/10)", **info))
    results.append(_per_row(conn, "compiled_sql_rf_numeric_row", "compiled", "purchase_rf_sql(age, income, credit_score)",
                            RAW_ROWS, n_rf, repeats,
                            "the same forest on the raw integer/NUMERIC columns: inlining repeats the casts at "
                            "every tree node", **info))
    results = [r.as_json() for r in results]
    costs = statement_costs(conn, "purchase_rf_sql", n_rf, with_default_jit=not quick)
    results.append(Result("compiled_sql_rf_statement", "compiled", 1,
                          [(costs["planning_ms"] + costs["executor_start_ms"]) / 1000],
                          "the compiled forest's fixed cost per statement (planning + executor start-up; one "
                          "'row' is one statement); marginal_us_per_row: each further row", {**costs, **info}).as_json())
    results += sweep(conn, (1, 5, 20) if quick else (1, 5, 10, 25, 50, 100), max_depth=8,
                     train_rows=5_000 if quick else 20_000, rows=1_000 if quick else 5_000, repeats=repeats)
    return results


if __name__ == "__main__":                              # python -m pgmlkit.bench.compiled [--quick]
    import json
    import sys

    from ..db import connect

    with connect() as connection:
        for result in run(connection, "--quick" in sys.argv):
            print(json.dumps({k: v for k, v in result.items() if k not in ("samples", "sql")}))
