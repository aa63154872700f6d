"""The benchmark (src/pgmlkit/bench/: harness, steps, report, cli) reports what it measured, correctly.

Not a timed test: no threshold on any speed. What is checked: medians and per-row figures are
computed right; the target logic passes and misses on made-up numbers; a missing function or a
fast path that predicts differently stops the run; and one complete run on tiny sizes against
the real database writes a bench.json with every required name, consistent fields and the
trigger mode restored.
"""
from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess

import pytest

import pgmlkit
from pgmlkit import bench
from pgmlkit.bench import cli, steps


def fake(name, us_per_row, rows=1000, group="per_row", **extra):
    seconds = us_per_row * rows / 1e6
    return bench.Result(name, group, rows, [seconds * 1.5, seconds, seconds * 0.9], "made up", extra)


GOOD = [fake("seed_naive_row", 200), fake("cached_row", 2), fake("sql_expression", 0.5),
        fake("plpython_call_floor", 1.2), fake("batch", 0.9, group="batch"),
        fake("plpython_array_floor", 0.5, group="batch"),
        fake("rf_sklearn_row", 5000), fake("rf_fast_row", 50, max_abs_diff=0.0),
        fake("plain_insert", 2, group="insert"), fake("statement_trigger_insert", 5, group="insert"),
        bench.Result("cold_start_linear", "cold_start", 1, [0.2, 0.05, 0.06], "made up"),
        bench.Result("cold_start_plpython", "cold_start", 1, [0.01, 0.01, 0.02], "made up")]


# ---- arithmetic -----------------------------------------------------------------------------------
def test_result_uses_the_median_and_derives_per_row_figures():
    r = bench.Result("x", "per_row", 4000, [3.0, 1.0, 2.0, 100.0, 2.5], "made up", {"note": 1})
    assert r.seconds == 2.5                                   # the median, not the mean (22.1)
    assert r.us_per_row == pytest.approx(2.5 / 4000 * 1e6)
    assert r.rows_per_s == pytest.approx(1600)
    doc = r.as_json()
    assert doc["repeats"] == 5 and doc["samples"] == [3.0, 1.0, 2.0, 100.0, 2.5] and doc["note"] == 1
    assert {"name", "rows", "seconds", "us_per_row", "rows_per_s", "repeats"} <= doc.keys()


def test_timed_runs_warms_up_then_times_each_repeat():
    calls = []
    samples = bench.timed_runs(lambda: calls.append(1), repeats=4, warmup=2)
    assert len(calls) == 6 and len(samples) == 4 and all(s >= 0 for s in samples)


# ---- targets --------------------------------------------------------------------------------------
def targets(results):
    return {t["name"]: t for t in bench.evaluate_targets(results)}


def test_all_targets_pass_on_good_numbers():
    t = targets(GOOD)
    assert set(t) == {"cached_vs_naive", "cached_vs_sql", "batch_throughput", "rf_fast_vs_sklearn",
                      "statement_trigger_vs_plain", "cold_start_linear"}      # no sql/10 results: no alt_ targets
    assert all(x["passed"] for x in t.values()), [x for x in t.values() if not x["passed"]]
    assert t["cached_vs_naive"]["measured"].startswith("100x")
    assert t["cold_start_linear"]["measured"] == "60 ms"       # median of 0.2, 0.05, 0.06


def replace(results, name, **changes):
    return [dataclasses.replace(r, **changes) if r.name == name else r for r in results]


def test_each_target_misses_when_its_numbers_are_bad():
    slow_cached = replace(GOOD, "cached_row", samples=[0.01, 0.01, 0.01])          # 10 us/row
    t = targets(slow_cached)
    assert not t["cached_vs_naive"]["passed"] and not t["cached_vs_sql"]["passed"]
    assert "plpython_call_floor" in t["cached_vs_sql"]["bound"]
    assert "= 167x faster than seed_naive_row" in t["cached_vs_naive"]["bound"]      # 200 / 1.2
    # batch passes by throughput OR by ratio: 0.9 us/row is 1.1M rows/s; 1.5 us/row is neither
    t = targets(replace(GOOD, "batch", samples=[0.0015] * 3))
    assert not t["batch_throughput"]["passed"] and "666,667 rows/s" in t["batch_throughput"]["measured"]
    fast_sql = replace(replace(GOOD, "batch", samples=[0.0015] * 3), "sql_expression", samples=[0.0012] * 3)
    assert targets(fast_sql)["batch_throughput"]["passed"]                          # 1.25x of sql_expression
    # the forest target needs identical predictions as well as speed
    assert not targets(replace(GOOD, "rf_fast_row", extra={"max_abs_diff": 0.5}))["rf_fast_vs_sklearn"]["passed"]
    assert not targets(replace(GOOD, "rf_fast_row", extra={}))["rf_fast_vs_sklearn"]["passed"]
    slow_trigger = replace(GOOD, "statement_trigger_insert", samples=[0.007] * 3)
    assert not targets(slow_trigger)["statement_trigger_vs_plain"]["passed"]
    bound = targets(slow_trigger + [fake("insert_update_floor", 4, group="insert")])["statement_trigger_vs_plain"]["bound"]
    assert "costs 2.0x plain_insert" in bound
    assert not targets(replace(GOOD, "cold_start_linear", samples=[0.151] * 3))["cold_start_linear"]["passed"]


def test_report_names_every_result_and_marks_misses():
    table = bench.format_table(GOOD)
    for r in GOOD:
        assert r.name in table
    text = bench.format_targets(bench.evaluate_targets(replace(GOOD, "cached_row", samples=[0.01] * 3)))
    assert text.count("[MISS]") == 2 and text.count("[PASS]") == 4 and "bound:" in text


def test_missing_results_lists_the_required_names_not_measured():
    assert bench.missing_results(GOOD) == [n for n in bench.REQUIRED_RESULTS if n not in {r.name for r in GOOD}]


# ---- against the real database ------------------------------------------------------------------
def test_a_missing_function_stops_the_run_and_names_its_file(conn):
    conn.execute("CREATE SCHEMA IF NOT EXISTS bench_test_empty")
    try:
        conn.execute("SET search_path = bench_test_empty")      # nothing of the kit is visible from here
        missing = dict(bench.missing_functions(conn))
        assert len(missing) == len(bench.REQUIRED_FUNCTIONS)
        assert missing["predict_purchase_cached(integer, double precision, integer)"] == "05_prediction.sql"
        with pytest.raises(bench.BenchError) as error:
            bench.Bench(conn, bench.QUICK, True, log=lambda _: None).check_functions()
        assert error.value.status == 2
        assert "ml_predict_batch(text, double precision[])" in str(error.value)
        assert "from sql/06_triggers.sql" in str(error.value)
    finally:
        conn.execute("RESET search_path")
        conn.execute("DROP SCHEMA bench_test_empty")


@pytest.fixture(scope="module")
def bench_schema():
    """The sql/ files the harness calls, applied here: this module creates what it uses."""
    with pgmlkit.connect() as conn:
        for name in bench.SQL_FILES:
            pgmlkit.run_sql_file(name, conn)


def test_per_row_shape_runs_the_expression_exactly_n_times(bench_schema, conn):
    conn.execute("SELECT load_sample_customers(50, 1)")
    assert conn.execute(bench.per_row_sql("1"), [7]).fetchone()[0] == 7
    assert conn.execute(bench.batch_sql("array_agg(age)"), [7]).fetchone()[0] == conn.execute(
        "SELECT sum(age) FROM (SELECT age FROM customer_data LIMIT 7) s").fetchone()[0]


TINY = dataclasses.replace(
    bench.QUICK, table_rows=2_000, train_rows=2_000, repeats=2, naive=20, bulk=1_000, rf_sklearn=5, rf_fast=20,
    rf_batch=200, insert=50, cold_repeats=1, client=500, http_row=10, http_batch=500, http_chunk=200, http_rf=3,
    check=50, model_row={a: 5 for a in bench.ALGORITHMS}, model_batch=100,
    training={"linear": [1_000]}, training_repeats_up_to=1_000, churn_direct=2, churn_pooled=4)


@pytest.fixture(scope="module")
def tiny_run(bench_schema):
    """One complete run of the harness at tiny sizes (about a minute: most of it is cold starts)."""
    lines = []
    with pgmlkit.connect() as conn:
        conn.execute("SELECT use_prediction_trigger('statement')")      # a mode the run must restore
        bench.configure_session(conn)
        b = bench.Bench(conn, TINY, quick=True, log=lines.append)
        # compiled is sql/10's (tested there); orbital builds an environment of its own (test below)
        document = b.run(only=set(bench.STEP_NAMES) - {"compiled", "orbital"})
        assert not any(line.endswith("models compiled to SQL (sql/10)") for line in lines)
        mode_after = conn.execute("SELECT prediction_trigger_mode()").fetchone()[0]
        conn.execute("SELECT use_prediction_trigger('none')")
        yield document, lines, mode_after, b


def test_tiny_run_has_every_required_name_and_consistent_fields(tiny_run):
    document, lines, mode_after, _ = tiny_run
    json.loads(json.dumps(document))                                  # serialisable as written
    names = [r["name"] for r in document["results"]]
    assert bench.missing_results(document["results"]) == []
    assert len(names) == len(set(names)), "result names must be unique"
    for r in document["results"]:
        assert r["seconds"] == statistics.median(r["samples"]) and r["repeats"] == len(r["samples"]) > 0
        assert r["us_per_row"] == pytest.approx(r["seconds"] / r["rows"] * 1e6)
        assert r["rows_per_s"] == pytest.approx(r["rows"] / r["seconds"])
        assert r["description"]
    by = bench.by_name(document["results"])
    assert by["seed_naive_row"]["rows"] == TINY.naive and by["cached_row"]["rows"] == TINY.bulk
    assert by["cold_start_linear"]["rows"] == 1 and by["cold_start_linear"]["connect_seconds"] > 0
    assert by["rf_fast_row"]["max_abs_diff"] <= 1e-6
    assert by["train_linear_1000"]["fetch_seconds"] <= by["train_linear_1000"]["seconds"]
    model = by["model_random_forest"]
    assert model["pickled_bytes"] > by["model_linear"]["pickled_bytes"]
    assert model["memory_growth_kb"] == model["library_memory_kb"] + model["model_memory_kb"]
    assert 0 < model["holdout_r2"] <= 1
    assert {t["name"] for t in document["targets"]} >= {"cached_vs_naive", "cold_start_linear", "churn_pooled"}
    direct, pooled = by["churn_direct_rf"], by["churn_pgbouncer_rf"]
    assert direct["server_backends"] == direct["requests"] == TINY.churn_direct     # a backend per connection
    assert pooled["requests"] == TINY.churn_pooled and pooled["server_backends"] <= pooled["pool_size"] == 2
    assert mode_after == "statement", "the run must restore the trigger mode it found"


def test_tiny_run_records_the_environment(tiny_run):
    env = tiny_run[0]["environment"]
    for key in ("timestamp", "quick", "postgresql", "server_python", "server_packages", "client_packages",
                "cores", "cpu_model", "session_settings", "sizes", "prediction_checks_max_abs_diff"):
        assert key in env, key
    assert env["quick"] is True and env["cores"] >= 1
    assert env["server_packages"]["scikit-learn"] == env["client_packages"]["scikit-learn"]
    assert env["session_settings"] == {"jit": "off", "max_parallel_workers_per_gather": "0",
                                       "synchronize_seqscans": "off"}
    assert env["sizes"]["table_rows"] == TINY.table_rows


def test_tiny_run_showed_progress(tiny_run):
    lines = tiny_run[1]
    assert any(line.startswith("[ 1/") and line.endswith("] schema") for line in lines)
    assert any("cached_row" in line and "us/row" in line for line in lines)


def test_a_fast_path_that_predicts_differently_stops_the_run(tiny_run):
    b = tiny_run[3]
    b.sql_formula = "(0::float8)"                                   # a "fast" formula that is wrong
    with pytest.raises(bench.BenchError, match="linear_sql_expression"):
        b.check_predictions()


def test_main_writes_the_file_and_prints_the_targets(tmp_path, capsys, monkeypatch):
    """main() end to end without measuring again: it writes what run_benchmark returns."""
    document = {"environment": {"cores": 2}, "results": [r.as_json() for r in GOOD],
                "targets": bench.evaluate_targets(GOOD)}
    monkeypatch.setattr(cli, "run_benchmark", lambda **_: document)
    output = tmp_path / "out" / "bench.json"
    status = cli.main(["--quick", "--output", str(output)])
    printed = capsys.readouterr().out
    assert json.loads(output.read_text()) == document
    assert "Targets" in printed and "[PASS] cached_row >= 70x faster than seed_naive_row" in printed
    assert status == 1, "GOOD lacks required names (e.g. http_microservice), so the run is incomplete"


def test_steps_are_chosen_by_name_and_the_first_three_always_run(monkeypatch):
    ran = []
    for step in steps.STEPS:
        monkeypatch.setattr(steps.Bench, step.method, lambda self, name=step.name: ran.append(name))
    monkeypatch.setattr(steps.Bench, "restore", lambda self: None)
    monkeypatch.setattr(steps.Bench, "environment", lambda self, checks: {})
    bench.Bench(None, TINY, quick=True, log=lambda _: None).run(only={"inserts", "training"})
    assert ran == ["schema", "data", "correctness", "inserts", "training"]
    with pytest.raises(SystemExit):
        cli.main(["--only", "random forest"])                # titles are not names


def sibling_imports(path) -> set[str]:
    """The pgmlkit.bench modules a file imports: `from .harness import x` and `from . import compiled`."""
    import ast
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module} if node.module else {a.name for a in node.names}
    return found


def test_the_bench_modules_import_each_other_without_a_circle():
    import pathlib
    folder = pathlib.Path(bench.__file__).parent
    graph = {path.stem: sibling_imports(path) for path in folder.glob("*.py") if path.stem != "__init__"}
    assert graph["harness"] == set() and graph["compiled"] == {"harness"}
    assert "steps" in graph["cli"] and "cli" not in graph["steps"]

    def reaches(start, goal, seen=()):
        return any(n == goal or (n not in seen and reaches(n, goal, (*seen, n))) for n in graph.get(start, ()))
    circles = [m for m in graph if reaches(m, m)]
    assert circles == [], f"modules in an import circle: {circles}"


def test_churn_target_needs_the_ratio_and_the_pool_bound():
    def churn(direct_s, pooled_s, backends):
        return [bench.Result("churn_direct_rf", "churn", 1, [direct_s] * 3, "made up", {"server_backends": 8}),
                bench.Result("churn_pgbouncer_rf", "churn", 1, [pooled_s] * 3, "made up",
                             {"server_backends": backends, "pool_size": 2})]
    assert targets(GOOD + churn(0.5, 0.001, 1))["churn_pooled"]["passed"]
    assert not targets(GOOD + churn(0.5, 0.1, 1))["churn_pooled"]["passed"]        # only 5x
    assert not targets(GOOD + churn(0.5, 0.001, 3))["churn_pooled"]["passed"]      # more backends than the pool


def test_orbital_sql_gets_its_input_table_as_a_cte_in_front():
    from pgmlkit.bench import peer
    assert peer.with_input('WITH "t1" AS (SELECT 1 FROM "orbital_input") SELECT 2', "SELECT 3") == \
        'WITH "orbital_input" AS (SELECT 3), "t1" AS (SELECT 1 FROM "orbital_input") SELECT 2'
    assert peer.with_input('SELECT x % 2 FROM "orbital_input"', "SELECT 3") == \
        'WITH "orbital_input" AS (SELECT 3) SELECT x %% 2 FROM "orbital_input"'


def test_orbital_comparison_runs_the_peers_sql_per_row_and_finds_its_differences(bench_schema, conn):
    """Our side of the comparison on the real database, with a query shaped like orbital's (orbital itself
    runs in `make bench`): the LATERAL one-row form must pair each row with its own prediction."""
    from pgmlkit.bench import peer
    conn.execute("SELECT load_sample_customers(2000, 1)")
    conn.execute("SELECT train_purchase_model('bench_peer_linear', 'linear', true, '{}', 0.2, 42, 2000)")
    model = conn.execute("SELECT v.parameters FROM ml_models m JOIN ml_model_versions v USING (model_name, version)"
                         " WHERE m.model_name = 'bench_peer_linear'").fetchone()[0]
    k = model["coefficients"]
    exact = (f'WITH "t1" AS (SELECT "t0"."age" * {k["age"]!r} + "t0"."income" * {k["income"]!r}'
             f' + "t0"."credit_score" * {k["credit_score"]!r} AS "v" FROM "orbital_input" AS "t0")'
             f' SELECT "t1"."v" + {model["intercept"]!r} AS "variable" FROM "t1"')
    assert peer.max_abs_diff(conn, exact, "bench_peer_linear", 50) < 1e-6
    off_by_age = exact.replace(f'* {k["age"]!r}', f'* {k["age"] + 1!r}')          # wrong by exactly the age
    assert peer.max_abs_diff(conn, off_by_age, "bench_peer_linear", 50) == pytest.approx(
        conn.execute("SELECT max(age) FROM (SELECT age FROM customer_data ORDER BY id LIMIT 50) s").fetchone()[0])
    per_row = f"SELECT sum(o.variable) FROM ({peer.with_input(exact, peer.BENCH_ROWS)}) AS o"
    assert conn.execute(per_row, [10]).fetchone()[0] == pytest.approx(
        conn.execute("SELECT sum(ml_predict_sklearn('bench_peer_linear', ARRAY[age, income::float8, credit_score]))"
                     " FROM (SELECT * FROM customer_data LIMIT 10) s").fetchone()[0])


def test_compiled_sql_results_add_comparison_targets():
    results = GOOD + [fake("compiled_sql_row", 0.8), fake("compiled_sql_rf_row", 40)]
    t = targets(results)
    assert t["alt_compiled_linear"]["passed"] and t["alt_compiled_linear"]["measured"].startswith("1.6x")
    assert t["alt_compiled_forest"]["passed"] and t["alt_compiled_forest"]["measured"].startswith("125x")
    t = targets(GOOD + [fake("compiled_sql_row", 3.0)])
    assert not t["alt_compiled_linear"]["passed"]              # 6x sql_expression


def workshop_state(conn):
    """What `make bench` must leave as it was: the workshop database's rows, models and functions."""
    counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("customer_data", "ml_model_versions")
              if conn.execute("SELECT to_regclass(%s)", [t]).fetchone()[0]}
    functions = conn.execute("SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace").fetchone()[0]
    return counts, functions


def test_make_bench_runs_in_a_database_of_its_own_and_drops_it(bench_schema, conn, tmp_path):
    """scripts/bench.sh (make bench) measures in <KIT_DB>_bench: the workshop database is untouched."""
    conn.execute("SELECT load_sample_customers(321, 7)")          # rows of its own, a count the bench would not leave
    before = workshop_state(conn)
    output = tmp_path / "bench.json"
    done = subprocess.run([str(pgmlkit.KIT_ROOT / "scripts" / "bench.sh"), "--quick", "--only", "per_row",
                           "--output", str(output)], capture_output=True, text=True, timeout=900,
                          cwd=pgmlkit.KIT_ROOT, env=os.environ | {"KIT_BENCH_DB": ""})
    assert done.returncode == 0, done.stderr[-3000:]
    database = pgmlkit.kit_settings()["KIT_DB"]
    assert f"on database {database}_bench" in done.stderr
    assert {r["name"] for r in json.loads(output.read_text())["results"]} >= {"seed_naive_row", "cached_row"}
    assert workshop_state(conn) == before
    assert not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [f"{database}_bench"]).fetchone()
