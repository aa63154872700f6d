"""The bench's harness: sizes, timing, Result (median of repeats), the session settings every
measurement runs under, and the targets — pure functions of the results, so a test can hand them
made-up numbers. Imports nothing else of the bench."""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

# The names every bench.json must contain (issue 4), plus the bounds that explain a missed target.
REQUIRED_RESULTS = (
    "seed_naive_row", "cached_row", "batch", "sql_expression",
    "plain_insert", "row_trigger_insert", "statement_trigger_insert",
    "rf_sklearn_row", "rf_fast_row", "rf_batch",
    "cold_start_linear", "cold_start_rf",
    "client_roundtrip", "http_microservice",
    "churn_direct_rf", "churn_pgbouncer_rf",
)



@dataclass(frozen=True)
class Sizes:
    """How many rows each measurement uses. Per-row costs do not depend on n once n is large enough
    for the fixed cost of one statement (~0.1 ms) to vanish; n is chosen so each run takes ~0.1-1 s."""
    table_rows: int
    train_rows: int             # rows the benchmark's models are trained on
    repeats: int
    naive: int
    bulk: int                   # cached_row, sql_expression, batch and their floors
    rf_sklearn: int
    rf_fast: int
    rf_batch: int
    insert: int
    cold_repeats: int
    client: int
    http_row: int
    http_batch: int
    http_chunk: int
    http_rf: int
    check: int                  # rows on which fast paths are compared with scikit-learn
    model_row: dict
    model_batch: int
    training: dict
    training_repeats_up_to: int  # sizes above this are trained once (they take seconds)
    churn_direct: int = 8        # requests on a new connection each, each paying a cold start
    churn_pooled: int = 40       # the same requests through PgBouncer


FULL = Sizes(
    table_rows=1_000_000, train_rows=20_000, repeats=5, naive=2_000, bulk=500_000,
    rf_sklearn=200, rf_fast=5_000, rf_batch=100_000, insert=10_000, cold_repeats=5,
    client=500_000, http_row=2_000, http_batch=200_000, http_chunk=10_000, http_rf=200, check=1_000,
    model_row={"linear": 2_000, "decision_tree": 2_000, "random_forest": 200, "gradient_boosting": 500, "mlp": 2_000},
    model_batch=50_000,
    training={"linear": [1_000, 10_000, 100_000, 1_000_000], "decision_tree": [1_000, 10_000, 100_000, 1_000_000],
              "gradient_boosting": [1_000, 10_000, 100_000, 1_000_000], "random_forest": [1_000, 10_000, 100_000],
              "mlp": [1_000, 10_000, 100_000]},
    training_repeats_up_to=10_000,
)

QUICK = Sizes(
    table_rows=20_000, train_rows=20_000, repeats=3, naive=200, bulk=20_000,
    rf_sklearn=20, rf_fast=300, rf_batch=5_000, insert=1_000, cold_repeats=2,
    client=20_000, http_row=300, http_batch=20_000, http_chunk=10_000, http_rf=20, check=300,
    model_row={"linear": 200, "decision_tree": 200, "random_forest": 20, "gradient_boosting": 50, "mlp": 200},
    model_batch=5_000,
    training={"linear": [1_000, 10_000], "random_forest": [1_000]},
    training_repeats_up_to=1_000, churn_direct=4, churn_pooled=20,
)


class BenchError(RuntimeError):
    """A benchmark that cannot run honestly (missing function, wrong predictions): stop, loudly."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status



# --------------------------------------------------------------------------------------------------
# Timing helpers (notebooks 08 and 10 use them too)
# --------------------------------------------------------------------------------------------------
def timed_runs(run, repeats: int = 5, warmup: int = 1) -> list[float]:
    """Call run() `warmup` times untimed (caches, imports, plans), then `repeats` timed times."""
    for _ in range(warmup):
        run()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return samples


def time_sql(conn, sql: str, params=None, repeats: int = 5, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of one statement, run to completion (all rows fetched), `repeats` times."""
    return timed_runs(lambda: conn.execute(sql, params).fetchall(), repeats, warmup)


def per_row_sql(expression: str) -> str:
    """The shape every per-row path is timed with: the server loops, the client waits for one number.
    The LIMIT is inside the subquery, so the expression runs for exactly n rows."""
    return f"SELECT sum({expression}) FROM (SELECT age, income, credit_score FROM customer_data LIMIT %s) AS s"


def batch_sql(call: str) -> str:
    """The shape every batch path is timed with: one call over arrays built from n rows, its result
    unnested in the select list (streamed to sum(); unnest in FROM would first copy it to a tuplestore)."""
    return (f"SELECT sum(p) FROM (SELECT unnest({call}) AS p FROM"
            f" (SELECT age, income, credit_score FROM customer_data LIMIT %s) AS s) AS t")


def cold_start(sql: str, repeats: int = 3, warmup: int = 1, then: str | None = None):
    """([seconds of the first statement on a new connection], [seconds to connect], [what `then` returned]).
    Every run opens a brand-new connection — a new backend process with no PL/Python loaded yet;
    `then` (e.g. a memory reading) runs after the timed statement, untimed."""
    from ..db import connect

    firsts, connects, answers = [], [], []
    for i in range(warmup + repeats):
        started = time.perf_counter()
        conn = connect()
        connected = time.perf_counter()
        try:
            conn.execute(sql).fetchall()
            done = time.perf_counter()
            answer = conn.execute(then).fetchall() if then else None
        finally:
            conn.close()
        if i >= warmup:
            firsts.append(done - connected)
            connects.append(connected - started)
            answers.append(answer)
    return firsts, connects, answers


def backend_memory_after(*statements: str) -> int:
    """Private memory (RssAnon, kB) of a brand-new backend after running `statements` in it."""
    from ..db import connect

    with connect() as conn:
        for statement in statements:
            conn.execute(statement).fetchall()
        return conn.execute("SELECT rss_anon_kb FROM backend_memory()").fetchone()[0]



SESSION_SETTINGS = {
    # One core, no compilation: every path is timed the same way, and none gets a parallel worker
    # or a JIT compile the others do not (both would distort small runs the most).
    "jit": "off",
    "max_parallel_workers_per_gather": "0",
    # A scan of a big table may start where another scan is (synchronized scans), so LIMIT n would
    # read different rows from run to run; off, every run reads the same first n rows.
    "synchronize_seqscans": "off",
}


def configure_session(conn) -> None:
    for name, value in SESSION_SETTINGS.items():
        conn.execute(f"SET {name} = {value}")


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------
@dataclass
class Result:
    name: str
    group: str
    rows: int
    samples: list[float]
    description: str
    extra: dict = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return statistics.median(self.samples)

    @property
    def us_per_row(self) -> float:
        return self.seconds / self.rows * 1e6

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")

    def as_json(self) -> dict:
        return {"name": self.name, "group": self.group, "rows": self.rows,
                "seconds": self.seconds, "us_per_row": self.us_per_row, "rows_per_s": self.rows_per_s,
                "repeats": len(self.samples), "samples": self.samples,
                "description": self.description, **self.extra}


def by_name(results) -> dict[str, dict]:
    """Results (Result objects or bench.json dicts) keyed by name, as dicts."""
    return {r["name"]: r for r in (x.as_json() if isinstance(x, Result) else x for x in results)}


# --------------------------------------------------------------------------------------------------
# Targets (issue 4): pure functions of the results, so a test can hand them made-up numbers.
# --------------------------------------------------------------------------------------------------
def evaluate_targets(results) -> list[dict]:
    """Each target: what was asked, what was measured, pass/miss, and (when measured) what bounds it."""
    r = by_name(results)
    us = lambda name: r[name]["us_per_row"]                       # noqa: E731
    targets = []

    def target(name, goal, passed, measured, bound=None):
        targets.append({"name": name, "goal": goal, "passed": bool(passed), "measured": measured,
                        **({"bound": bound} if bound else {})})

    def have(*names):
        return all(n in r for n in names)

    if have("seed_naive_row", "cached_row"):
        ratio = us("seed_naive_row") / us("cached_row")
        bound = None
        if "plpython_call_floor" in r:
            bound = (f"no per-row PL/Python function can be more than seed_naive_row / plpython_call_floor = "
                     f"{us('seed_naive_row') / us('plpython_call_floor'):,.0f}x faster than seed_naive_row")
        target("cached_vs_naive", "cached_row >= 70x faster than seed_naive_row", ratio >= 70,
               f"{ratio:,.0f}x ({us('seed_naive_row'):,.1f} -> {us('cached_row'):,.2f} us/row)", bound)
    if have("cached_row", "sql_expression"):
        ratio = us("cached_row") / us("sql_expression")
        bound = None
        if "plpython_call_floor" in r:
            floor = us("plpython_call_floor") / us("sql_expression")
            bound = (f"a PL/Python call that does nothing costs {us('plpython_call_floor'):.2f} us/row "
                     f"= {floor:.1f}x sql_expression (plpython_call_floor)")
        target("cached_vs_sql", "cached_row within 5x of sql_expression", ratio <= 5,
               f"{ratio:.1f}x ({us('cached_row'):.2f} vs {us('sql_expression'):.2f} us/row)", bound)
    if have("batch", "sql_expression"):
        ratio = us("batch") / us("sql_expression")
        rate = r["batch"]["rows_per_s"]
        bound = None
        if "plpython_array_floor" in r:
            bound = (f"passing the arrays in and out of PL/Python alone: "
                     f"{r['plpython_array_floor']['rows_per_s']:,.0f} rows/s (plpython_array_floor)")
        target("batch_throughput", "batch >= 1,000,000 rows/s, or within 1.5x of sql_expression",
               rate >= 1_000_000 or ratio <= 1.5, f"{rate:,.0f} rows/s, {ratio:.1f}x sql_expression", bound)
    if have("rf_sklearn_row", "rf_fast_row"):
        ratio = us("rf_sklearn_row") / us("rf_fast_row")
        diff = r["rf_fast_row"].get("max_abs_diff")
        identical = diff is not None and diff <= 1e-6
        target("rf_fast_vs_sklearn", "rf_fast_row >= 50x faster than rf_sklearn_row, identical predictions",
               ratio >= 50 and identical,
               f"{ratio:,.0f}x ({us('rf_sklearn_row'):,.0f} -> {us('rf_fast_row'):,.1f} us/row), "
               f"max |difference| {diff if diff is not None else 'not measured'}")
    if have("statement_trigger_insert", "plain_insert"):
        ratio = us("statement_trigger_insert") / us("plain_insert")
        bound = None
        if "insert_update_floor" in r:
            bound = (f"inserting the rows and updating them once, without any prediction, costs "
                     f"{us('insert_update_floor') / us('plain_insert'):.1f}x plain_insert (insert_update_floor)")
        target("statement_trigger_vs_plain", "statement_trigger_insert within 3x of plain_insert", ratio <= 3,
               f"{ratio:.1f}x ({us('statement_trigger_insert'):.1f} vs {us('plain_insert'):.1f} us/row)", bound)
    if have("cold_start_linear"):
        seconds = r["cold_start_linear"]["seconds"]
        bound = None
        if "cold_start_plpython" in r:
            bound = (f"the first call of any PL/Python function on a new connection: "
                     f"{r['cold_start_plpython']['seconds'] * 1000:.0f} ms (cold_start_plpython)")
        target("cold_start_linear", "cold_start_linear <= 150 ms", seconds <= 0.150,
               f"{seconds * 1000:.0f} ms", bound)
    if have("churn_direct_rf", "churn_pgbouncer_rf"):
        direct, pooled = r["churn_direct_rf"], r["churn_pgbouncer_rf"]
        ratio = direct["seconds"] / pooled["seconds"]
        target("churn_pooled", "a new connection per request: through PgBouncer >= 10x faster per request, "
               "on at most its pool's backends", ratio >= 10 and pooled["server_backends"] <= pooled["pool_size"],
               f"{ratio:,.0f}x ({direct['seconds'] * 1000:,.1f} -> {pooled['seconds'] * 1000:,.2f} ms per request; "
               f"{direct['server_backends']} -> {pooled['server_backends']} backends)",
               f"a new backend's first forest prediction: {r['cold_start_rf']['seconds'] * 1000:,.0f} ms (cold_start_rf)"
               if "cold_start_rf" in r else None)
    # For comparison, not instead: the same goals met by the models compiled to SQL (sql/10), if measured.
    if have("compiled_sql_row", "sql_expression", "seed_naive_row"):
        ratio, speedup = us("compiled_sql_row") / us("sql_expression"), us("seed_naive_row") / us("compiled_sql_row")
        target("alt_compiled_linear", "(sql/10) compiled_sql_row within 5x of sql_expression and >= 70x seed_naive_row",
               ratio <= 5 and speedup >= 70, f"{ratio:.1f}x sql_expression, {speedup:,.0f}x seed_naive_row")
    if have("compiled_sql_rf_row", "rf_sklearn_row"):
        ratio = us("rf_sklearn_row") / us("compiled_sql_rf_row")
        target("alt_compiled_forest", "(sql/10) compiled_sql_rf_row >= 50x faster than rf_sklearn_row", ratio >= 50,
               f"{ratio:,.0f}x ({us('compiled_sql_rf_row'):,.1f} us/row)")
    return targets


def missing_results(results) -> list[str]:
    names = by_name(results)
    return [name for name in REQUIRED_RESULTS if name not in names]



def short_number(value: float, digits: int = 2) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"
