"""The bench's steps, in the order they run (STEPS: one Bench method per step, chosen by its name;
--only takes the names). Bench keeps what the steps share: the connection, the sizes, the results,
the microservice, and what to restore at the end."""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import http.client
import json
import os
import pickle
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

from ..config import KIT_ROOT
from . import compiled, peer
from .harness import (FULL, QUICK, SESSION_SETTINGS, BenchError, Result, Sizes, backend_memory_after, batch_sql,
                      cold_start, configure_session, evaluate_targets, per_row_sql, short_number, time_sql,
                      timed_runs)

SQL_FILES = ("02_sample_data.sql", "04_training.sql", "05_prediction.sql", "06_triggers.sql", "08_tradeoffs.sql")
HARDENING_FILE = "09_hardening.sql"

# Every function the benchmark calls: (name, the argument types it is called with, the file that
# defines it). A function may take more arguments than listed if they have defaults.
REQUIRED_FUNCTIONS = (
    ("load_sample_customers", ("integer", "integer"), "02_sample_data.sql"),
    ("train_purchase_model", ("text", "text", "boolean", "jsonb", "double precision", "integer", "integer"),
     "04_training.sql"),
    ("ml_load_model", ("text",), "04_training.sql"),
    ("ml_library_versions", (), "04_training.sql"),
    ("predict_purchase", ("integer", "numeric", "integer"), "05_prediction.sql"),
    ("predict_purchase_cached", ("integer", "double precision", "integer"), "05_prediction.sql"),
    ("predict_purchase_batch", ("integer[]", "double precision[]", "integer[]"), "05_prediction.sql"),
    ("ml_predict", ("text", "double precision[]"), "05_prediction.sql"),
    ("ml_predict_batch", ("text", "double precision[]"), "05_prediction.sql"),
    ("use_prediction_trigger", ("text",), "06_triggers.sql"),
    ("prediction_trigger_mode", (), "06_triggers.sql"),
    ("plpython_call_floor", ("integer", "double precision", "integer"), "08_tradeoffs.sql"),
    ("plpython_array_floor", ("integer[]", "double precision[]", "integer[]"), "08_tradeoffs.sql"),
    ("plpython_import_seconds", ("text",), "08_tradeoffs.sql"),
    ("ml_predict_sklearn", ("text", "double precision[]"), "08_tradeoffs.sql"),
    ("ml_predict_sklearn_batch", ("text", "double precision[]"), "08_tradeoffs.sql"),
    ("backend_memory", (), "08_tradeoffs.sql"),
    ("training_cost", ("text", "integer", "jsonb"), "08_tradeoffs.sql"),
)


def missing_functions(conn) -> list[tuple[str, str]]:
    """(call signature, file) for every required function the database cannot call as the bench does."""
    missing = []
    for name, args, source in REQUIRED_FUNCTIONS:
        candidates = conn.execute(
            "SELECT ARRAY(SELECT format_type(t.oid, NULL) FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS t(oid, i)"
            "             ORDER BY t.i), p.pronargdefaults"
            "  FROM pg_proc p WHERE p.proname = %s AND pg_function_is_visible(p.oid)", [name]).fetchall()
        if not any(list(types[:len(args)]) == list(args) and len(types) - defaults <= len(args)
                   for types, defaults in candidates):
            missing.append((f"{name}({', '.join(args)})", source))
    return missing


ALGORITHMS = ("linear", "decision_tree", "random_forest", "gradient_boosting", "mlp")
LINEAR_MODEL, FOREST_MODEL = "purchase_predictor", "purchase_rf"
MODEL_NAMES = {"linear": LINEAR_MODEL, "random_forest": FOREST_MODEL, "decision_tree": "bench_decision_tree",
               "gradient_boosting": "bench_gradient_boosting", "mlp": "bench_mlp"}
FEATURES_SQL = "ARRAY[age, income::float8, credit_score]"     # the models' feature order, as float8[]
PROBE = (35, 50000, 700)                                       # the talk's first customer


# Modules a model's predict() needs (what unpickling it imports), to split memory into libraries vs model.
LIBRARY_MODULES = {
    "linear": ("numpy", "sklearn.linear_model"),
    "decision_tree": ("numpy", "sklearn.tree"),
    "random_forest": ("numpy", "sklearn.ensemble"),
    "gradient_boosting": ("numpy", "sklearn.ensemble"),
    "mlp": ("numpy", "sklearn.pipeline", "sklearn.preprocessing", "sklearn.neural_network"),
}



# --------------------------------------------------------------------------------------------------
# The harness
# --------------------------------------------------------------------------------------------------
class Bench:
    def __init__(self, conn, sizes: Sizes, quick: bool, log=None):
        self.conn = conn
        self.sizes = sizes
        self.quick = quick
        self.results: list[Result] = []
        self.log = log or (lambda text: print(text, file=sys.stderr, flush=True))
        self._service = None
        self._models_on_disk: dict[str, str] = {}
        self.checks: dict = {}                            # max |fast - sklearn| per path, from CORRECTNESS
        self.trigger_mode_before: str | None = None      # restored at the end
        self.hardened = False                             # sql/09 was applied: re-apply it at the end
        self._tmp = tempfile.TemporaryDirectory(prefix="pgmlkit-bench-")
        self.started = time.perf_counter()

    # ---- plumbing --------------------------------------------------------------------------------
    def elapsed(self) -> str:
        return f"{time.perf_counter() - self.started:6.1f}s"

    def execute(self, sql: str, params=None):
        return self.conn.execute(sql, params).fetchall()

    def scalar(self, sql: str, params=None):
        return self.conn.execute(sql, params).fetchone()[0]

    def timed_runs(self, run, repeats: int | None = None, warmup: int = 1) -> list[float]:
        return timed_runs(run, repeats or self.sizes.repeats, warmup)

    def time_sql(self, sql: str, params=None, repeats: int | None = None, warmup: int = 1) -> list[float]:
        return time_sql(self.conn, sql, params, repeats or self.sizes.repeats, warmup)

    def add(self, name, group, rows, samples, description, **extra) -> Result:
        result = Result(name, group, rows, samples, description, extra)
        self.results.append(result)
        if result.rows == 1:
            shown = f"{result.seconds * 1000:,.1f} ms"
        else:
            shown = f"{short_number(result.us_per_row)} us/row, {result.rows_per_s:,.0f} rows/s"
        self.log(f"  {self.elapsed()}  {name:<28} {rows:>9,} rows x {len(samples)}  median {result.seconds:.4f} s"
                 f"  ({shown})")
        return result

    # ---- 1. schema -------------------------------------------------------------------------------
    def apply_sql(self) -> None:
        from ..config import SQL_DIR
        from ..db import run_sql_file

        missing_files = [name for name in SQL_FILES if not (SQL_DIR / name).exists()]
        if self.scalar("SELECT to_regprocedure('prediction_trigger_mode()') IS NOT NULL"):
            self.trigger_mode_before = self.scalar("SELECT prediction_trigger_mode()")
        # sql/09 (hardening) must be applied after the files it hardens: if it was, re-apply it at the end.
        self.hardened = (SQL_DIR / HARDENING_FILE).exists() and self.scalar(
            "SELECT to_regnamespace('ml_private') IS NOT NULL AND to_regnamespace('ml') IS NOT NULL")
        for name in SQL_FILES:
            if name not in missing_files:
                self.log(f"  {self.elapsed()}  applying sql/{name}")
                run_sql_file(name, self.conn)
        self.check_functions(missing_files)

    def check_functions(self, missing_files=()) -> None:
        missing = missing_functions(self.conn)
        if missing:
            lines = [f"  {signature:<70} from sql/{source}"
                     + (" (the file does not exist)" if source in missing_files else "")
                     for signature, source in missing]
            raise BenchError("the benchmark cannot run: these functions are missing from the database\n"
                             + "\n".join(lines)
                             + "\nFix: apply the sql/ files named above (psql -f sql/NN_*.sql), "
                               "or finish them if they are not written yet.", status=2)

    # ---- 2. data and models ----------------------------------------------------------------------
    def prepare(self) -> None:
        s = self.sizes
        if self.trigger_mode_before is None:
            self.trigger_mode_before = self.scalar("SELECT prediction_trigger_mode()")
        self.scalar("SELECT use_prediction_trigger('none')")
        self.log(f"  {self.elapsed()}  load_sample_customers({s.table_rows:,})")
        with self.conn.transaction():
            self.conn.execute("SET LOCAL session_replication_role = replica")   # no trigger scores the load
            self.scalar("SELECT load_sample_customers(%s, 42)", [s.table_rows])
        self.conn.execute("VACUUM ANALYZE customer_data")
        for algorithm in ALGORITHMS:
            name = MODEL_NAMES[algorithm]
            self.log(f"  {self.elapsed()}  train_purchase_model('{name}', '{algorithm}') on {s.train_rows:,} rows")
            self.scalar("SELECT train_purchase_model(%s, %s, true, '{}', 0.2, 42, %s)",
                        [name, algorithm, s.train_rows])
        # The formula the linear model learned, for sql_expression (as float8 literals).
        params = self.scalar(
            "SELECT v.parameters FROM ml_models m JOIN ml_model_versions v USING (model_name, version)"
            " WHERE m.model_name = %s", [LINEAR_MODEL])
        c = params["coefficients"]
        self.sql_formula = (f"({params['intercept']!r}::float8 + {c['age']!r}::float8 * age"
                            f" + {c['income']!r}::float8 * income::float8 + {c['credit_score']!r}::float8 * credit_score)")

    def restore(self) -> None:
        """Leave the database as the workshop had it: the trigger mode, and sql/09's hardening.
        On a new connection if the run's own was lost (a server restart, say)."""
        from ..db import connect, run_sql_file

        conn = self.conn if not self.conn.closed else connect()
        mode = self.trigger_mode_before
        if mode in ("row", "statement", "none"):
            conn.execute("SELECT use_prediction_trigger(%s)", [mode])
        if self.hardened:
            self.log(f"  {self.elapsed()}  re-applying sql/{HARDENING_FILE} (it was applied before the run)")
            run_sql_file(HARDENING_FILE, conn)
        if conn is not self.conn:
            conn.close()

    # ---- 3. correctness --------------------------------------------------------------------------
    def check_predictions(self) -> dict:
        """The fast paths must predict what scikit-learn predicts, or their speed means nothing.
        The differences are kept in self.checks (the forest step reports them beside its timings)."""
        n = self.sizes.check
        rows = f"(SELECT id, age, income, credit_score FROM customer_data ORDER BY id LIMIT {n}) AS s"
        linear = self.conn.execute(f"""
            WITH reference AS (
                SELECT id, ml_predict_sklearn('{LINEAR_MODEL}', {FEATURES_SQL}) AS sklearn,
                       predict_purchase(age, income, credit_score)::float8 AS naive,
                       predict_purchase_cached(age, income::float8, credit_score) AS cached,
                       {self.sql_formula} AS sql_expression
                  FROM {rows}),
            batch AS (
                SELECT unnest(array_agg(id ORDER BY id)) AS id,
                       unnest(predict_purchase_batch(array_agg(age ORDER BY id), array_agg(income::float8 ORDER BY id),
                                                     array_agg(credit_score ORDER BY id))) AS batch
                  FROM {rows})
            SELECT max(abs(naive - sklearn)), max(abs(cached - sklearn)), max(abs(batch - sklearn)),
                   max(abs(sql_expression - sklearn)), max(abs(sklearn)), count(*), count(batch)
              FROM reference JOIN batch USING (id)""").fetchone()
        # Separate statements for the per-row and the batch forest paths, as an application would run them.
        sklearn = dict(self.execute(f"SELECT id, ml_predict_sklearn('{FOREST_MODEL}', {FEATURES_SQL}) FROM {rows}"))
        fast = dict(self.execute(f"SELECT id, ml_predict('{FOREST_MODEL}', {FEATURES_SQL}) FROM {rows}"))
        ids, batch = self.conn.execute(
            f"SELECT array_agg(id ORDER BY id), ml_predict_batch('{FOREST_MODEL}', array_agg({FEATURES_SQL} ORDER BY id))"
            f" FROM {rows}").fetchone()
        batch = dict(zip(ids, batch))
        diff = lambda other: max((abs(other[k] - v) for k, v in sklearn.items()), default=None)  # noqa: E731
        forest = (diff(fast), diff(batch), len(fast), len(batch))
        checks = {"linear_naive": linear[0], "linear_cached": linear[1], "linear_batch": linear[2],
                  "linear_sql_expression": linear[3], "rf_fast": forest[0], "rf_batch": forest[1]}
        scale = max(1.0, float(linear[4] or 0))
        wrong = {k: v for k, v in checks.items() if v is None or v > 1e-6 * scale}
        if linear[5] != n or linear[6] != n or forest[2] != n or forest[3] != n:
            wrong["row counts"] = (linear[5], linear[6], forest[2], forest[3], n)
        self.log(f"  {self.elapsed()}  predictions agree with scikit-learn on {n:,} rows: "
                 + ", ".join(f"{k} {v:.1e}" for k, v in checks.items() if v is not None))
        if wrong:
            raise BenchError(f"a fast path does not predict what scikit-learn predicts on {n} rows "
                             f"(max |difference| per path): {wrong}")
        self.checks = checks
        return checks

    # ---- 4. measurements -------------------------------------------------------------------------
    def per_row(self, name, expression, n, description, **extra):
        sql = per_row_sql(expression)
        return self.add(name, "per_row", n, self.time_sql(sql, [n]), description, sql=sql % n, **extra)

    def batch_call(self, name, call, n, description, group="batch", **extra):
        sql = batch_sql(call)
        return self.add(name, group, n, self.time_sql(sql, [n]), description, sql=sql % n, **extra)

    def measure_per_row(self):
        s = self.sizes
        self.per_row("seed_naive_row", "predict_purchase(age, income, credit_score)", s.naive,
                     "the talk's predict_purchase (types fixed): reads and unpickles the model on every call")
        self.per_row("plpython_call_floor", "plpython_call_floor(age, income::float8, credit_score)", s.bulk,
                     "bound: a PL/Python function that does nothing, same arguments as cached_row")
        self.per_row("cached_row", "predict_purchase_cached(age, income::float8, credit_score)", s.bulk,
                     "the kit's per-row path: model cached per session, a retrained model picked up")
        self.per_row("sql_expression", self.sql_formula, s.bulk,
                     "the same linear formula as a plain SQL expression (coefficients as literals): the bound")

    def measure_batch(self):
        s = self.sizes
        arrays = "array_agg(age), array_agg(income::float8), array_agg(credit_score)"
        self.batch_call("plpython_array_floor", f"plpython_array_floor({arrays})", s.bulk,
                        "bound: three arrays into PL/Python and one back, nothing computed")
        self.batch_call("batch", f"predict_purchase_batch({arrays})", s.bulk,
                        "the kit's bulk scoring (linear): arrays in, one vectorised predict, array out")

    def measure_forest(self):
        s, checks = self.sizes, self.checks
        self.per_row("rf_sklearn_row", f"ml_predict_sklearn('{FOREST_MODEL}', {FEATURES_SQL})", s.rf_sklearn,
                     "RandomForest (100 trees), cached, scikit-learn predict() per row")
        self.per_row("rf_fast_row", f"ml_predict('{FOREST_MODEL}', {FEATURES_SQL})", s.rf_fast,
                     "the kit's fast per-row path for the same forest", max_abs_diff=checks["rf_fast"],
                     checked_rows=s.check)
        self.batch_call("rf_batch", f"ml_predict_batch('{FOREST_MODEL}', array_agg({FEATURES_SQL}))", s.rf_batch,
                        "the kit's batch path for the same forest", max_abs_diff=checks["rf_batch"],
                        checked_rows=s.check)
        self.batch_call("rf_sklearn_batch", f"ml_predict_sklearn_batch('{FOREST_MODEL}', array_agg({FEATURES_SQL}))",
                        s.rf_batch, "the same forest, scikit-learn predict() on the whole matrix")

    def measure_inserts(self):
        n = self.sizes.insert
        sql = ("INSERT INTO customer_data (age, income, credit_score)"
               " SELECT age, income, credit_score FROM customer_data ORDER BY id LIMIT %s")
        for name, mode, description in (
                ("plain_insert", "none", "INSERT ... SELECT of n rows, no trigger"),
                ("row_trigger_insert", "row", "the same INSERT with the kit's BEFORE INSERT FOR EACH ROW trigger"),
                ("statement_trigger_insert", "statement",
                 "the same INSERT with the kit's AFTER INSERT FOR EACH STATEMENT trigger (transition table)")):
            def run(mode=mode):
                # Each run is one transaction that is rolled back: the table stays as it was.
                with self.conn.transaction(force_rollback=True):
                    self.scalar("SELECT use_prediction_trigger(%s)", [mode])
                    started = time.perf_counter()
                    self.conn.execute(sql, [n])
                    return time.perf_counter() - started
            run()                                                 # warm-up
            samples = [run() for _ in range(self.sizes.repeats)]
            self.add(name, "insert", n, samples, description, sql=sql % n, trigger_mode=mode)
        # The floor of any trigger that writes predictions back after the INSERT: every row is
        # written twice. No prediction at all, just the INSERT and an UPDATE of the same rows, on the
        # table as statement mode lays it out (its fillfactor) but with the trigger disabled.
        def insert_then_update():
            with self.conn.transaction(force_rollback=True):
                self.scalar("SELECT use_prediction_trigger('statement')")
                self.conn.execute("ALTER TABLE customer_data DISABLE TRIGGER USER")
                last_id = self.scalar("SELECT max(id) FROM customer_data")
                started = time.perf_counter()
                self.conn.execute(sql, [n])
                self.conn.execute("UPDATE customer_data SET predicted_purchase = 0, model_version = 0 WHERE id > %s",
                                  [last_id])
                return time.perf_counter() - started
        insert_then_update()
        self.add("insert_update_floor", "insert", n, [insert_then_update() for _ in range(self.sizes.repeats)],
                 "bound: the same INSERT, then an UPDATE of the rows it inserted (each row written twice), "
                 "no prediction")
        with self.conn.transaction(force_rollback=True):          # the rows really got predictions
            self.scalar("SELECT use_prediction_trigger('statement')")
            self.conn.execute(sql, [10])
            scored = self.scalar("SELECT count(predicted_purchase) FROM customer_data"
                                 " WHERE id > (SELECT max(id) - 10 FROM customer_data)")
        if scored != 10:
            raise BenchError(f"the statement trigger stored {scored} predictions for 10 inserted rows")

    def cold(self, name, sql, description):
        """A brand-new connection (a new backend process), then the first call: imports + unpickling."""
        firsts, connects, _ = cold_start(sql, self.sizes.cold_repeats)
        return self.add(name, "cold_start", 1, firsts, description, sql=sql,
                        connect_seconds=statistics.median(connects))

    def measure_cold_starts(self):
        a, i, c = PROBE
        self.cold("cold_start_plpython", f"SELECT plpython_call_floor({a}, {i}, {c})",
                  "bound: the first call of any PL/Python function on a new connection")
        self.cold("cold_import_numpy", "SELECT plpython_import_seconds('numpy')",
                  "on a new connection: PL/Python start + import numpy")
        self.cold("cold_import_sklearn", "SELECT plpython_import_seconds('sklearn.ensemble')",
                  "on a new connection: PL/Python start + import scikit-learn (sklearn.ensemble)")
        self.cold("cold_start_linear", f"SELECT predict_purchase_cached({a}, {i}, {c})",
                  "seconds to the first prediction on a new connection, the kit's per-row linear path")
        self.cold("cold_start_linear_sklearn", f"SELECT ml_predict_sklearn('{LINEAR_MODEL}', ARRAY[{a}, {i}, {c}]::float8[])",
                  "the same first prediction through scikit-learn's predict(): import + unpickle")
        self.cold("cold_start_rf", f"SELECT ml_predict('{FOREST_MODEL}', ARRAY[{a}, {i}, {c}]::float8[])",
                  "seconds to the first prediction on a new connection, the kit's forest path")

    def measure_churn(self):
        """Cold start is per backend: a client that connects per request pays it per request, unless a
        pooler (PgBouncer, transaction mode) hands the requests to the few backends it keeps open."""
        from ..config import database_url
        from ..pooler import PgBouncer, churn

        a, i, c = PROBE
        sql = f"SELECT ml_predict('{FOREST_MODEL}', ARRAY[{a}, {i}, {c}]::float8[])"
        direct = churn(database_url(), sql, self.sizes.churn_direct)
        self.add("churn_direct_rf", "churn", 1, direct["seconds"],
                 "seconds per request, a new connection each (connect + first forest prediction + close)",
                 sql=sql, server_backends=direct["backends"], requests=self.sizes.churn_direct)
        with PgBouncer(pool_size=2) as bouncer:
            pooled = churn(bouncer.url, sql, self.sizes.churn_pooled)
        self.add("churn_pgbouncer_rf", "churn", 1, pooled["seconds"],
                 "the same requests, each a new client connection to PgBouncer (transaction pooling, 2 backends)",
                 sql=sql, server_backends=pooled["backends"], pool_size=2, requests=self.sizes.churn_pooled)

    # ---- client side -----------------------------------------------------------------------------
    def client_model(self, model_name: str):
        """The deployed model's bytes from the registry, digest checked, unpickled in this process."""
        data, sha = self.conn.execute(
            "SELECT v.model_data, v.model_sha256 FROM ml_models m JOIN ml_model_versions v USING (model_name, version)"
            " WHERE m.model_name = %s", [model_name]).fetchone()
        if hashlib.sha256(data).hexdigest() != sha:
            raise BenchError(f"{model_name}: registry bytes do not match their sha256; refusing to unpickle")
        path = Path(self._tmp.name) / f"{model_name}.pkl"
        path.write_bytes(data)
        self._models_on_disk[model_name] = str(path)
        return pickle.loads(data)

    def write_back(self, ids, predictions) -> None:
        with self.conn.cursor().copy("COPY bench_predictions (id, predicted) FROM STDIN") as copy:
            for row in zip(ids, predictions):
                copy.write_row(row)

    def fetch(self, n):
        return self.execute("SELECT id, age, income::float8, credit_score FROM customer_data LIMIT %s", [n])

    def start_service(self):
        specs = [f"{name}={path}" for name, path in self._models_on_disk.items()]
        self._service = subprocess.Popen([sys.executable, "-m", "pgmlkit.bench_service", *specs],
                                         stdout=subprocess.PIPE, text=True)
        port = int(self._service.stdout.readline())
        self._http = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self._http.connect()
        self._http.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def stop_service(self):
        if self._service is not None:
            with contextlib.suppress(Exception):
                self._http.close()
            self._service.terminate()
            self._service.wait(timeout=10)
            self._service = None

    def post(self, model_name, rows):
        body = json.dumps({"rows": rows}).encode()
        self._http.request("POST", f"/predict/{model_name}", body=body, headers={"Content-Type": "application/json"})
        response = self._http.getresponse()
        payload = json.loads(response.read())
        if response.status != 200:
            raise BenchError(f"the microservice answered {response.status}: {payload}")
        return payload["predictions"]

    def measure_client(self):
        import numpy as np

        s = self.sizes
        model = self.client_model(LINEAR_MODEL)
        self.client_model(FOREST_MODEL)
        self.conn.execute("CREATE TEMP TABLE IF NOT EXISTS bench_predictions (id integer, predicted double precision)")

        def roundtrip(n, predict):
            def run():
                self.conn.execute("TRUNCATE bench_predictions")
                started = time.perf_counter()
                rows = self.fetch(n)
                predictions = predict(rows)
                self.write_back([r[0] for r in rows], predictions)
                return time.perf_counter() - started
            return run

        def samples_of(run):
            run()                                                  # warm-up
            return [run() for _ in range(s.repeats)]

        def written(n):
            count = self.scalar("SELECT count(*) FROM bench_predictions")
            if count != n:
                raise BenchError(f"expected {n} predictions written back, found {count}")

        def in_database():
            self.conn.execute("TRUNCATE bench_predictions")
            started = time.perf_counter()
            self.conn.execute(
                "INSERT INTO bench_predictions (id, predicted)"
                " SELECT unnest(ids), unnest(predict_purchase_batch(a, i, c)) FROM"
                " (SELECT array_agg(id) AS ids, array_agg(age) AS a, array_agg(income::float8) AS i,"
                "  array_agg(credit_score) AS c FROM (SELECT * FROM customer_data LIMIT %s) AS s) AS t", [s.client])
            return time.perf_counter() - started

        self.add("batch_write", "client", s.client, samples_of(in_database),
                 "in the database: batch-score n rows and INSERT the predictions into a table")
        written(s.client)

        local = lambda rows: model.predict(np.array([r[1:] for r in rows], dtype=np.float64)).tolist()  # noqa: E731
        self.add("client_roundtrip", "client", s.client, samples_of(roundtrip(s.client, local)),
                 "psycopg fetches n rows, scikit-learn predicts in the client, COPY writes the predictions back")
        written(s.client)

        self.start_service()
        try:
            per_row = lambda name: (lambda rows: [self.post(name, [list(r[1:])])[0] for r in rows])  # noqa: E731
            self.add("http_microservice", "client", s.http_row, samples_of(roundtrip(s.http_row, per_row(LINEAR_MODEL))),
                     "the same model behind HTTP on loopback, one request per row (keep-alive), rows fetched "
                     "and predictions written back as in client_roundtrip")
            written(s.http_row)

            def chunked(rows):
                out = []
                for start in range(0, len(rows), s.http_chunk):
                    out += self.post(LINEAR_MODEL, [list(r[1:]) for r in rows[start:start + s.http_chunk]])
                return out
            self.add("http_microservice_batch", "client", s.http_batch, samples_of(roundtrip(s.http_batch, chunked)),
                     f"the same service, {s.http_chunk:,} rows per request", chunk_rows=s.http_chunk)
            written(s.http_batch)
            self.add("http_microservice_rf", "client", s.http_rf,
                     samples_of(roundtrip(s.http_rf, per_row(FOREST_MODEL))),
                     "the forest behind the same service, one request per row")
            written(s.http_rf)
            # The pure protocol cost: one request per row, nothing fetched or written.
            probe = [list(map(float, PROBE))]
            calls = s.http_row
            samples = self.timed_runs(lambda: [self.post(LINEAR_MODEL, probe) for _ in range(calls)])
            self.add("http_request_only", "client", calls, samples,
                     "bound: one HTTP request + predict() per row, no database involved")
        finally:
            self.stop_service()

    # ---- models compiled to SQL (sql/10, measured by pgmlkit.bench.compiled) ----------------------
    def measure_compiled(self):
        from ..config import SQL_DIR

        if not (SQL_DIR / "10_compiled_models.sql").exists():
            self.log("  (sql/10_compiled_models.sql is not there: skipped)")
            return
        try:
            documents = compiled.run(self.conn, self.quick)
        except Exception as error:                                # noqa: BLE001 — reported, then stop
            raise BenchError(f"the compiled-to-SQL measurements (pgmlkit.bench.compiled) failed: "
                             f"{type(error).__name__}: {error}") from error
        configure_session(self.conn)
        for doc in documents:
            extra = {k: v for k, v in doc.items() if k not in
                     ("name", "group", "rows", "samples", "description", "seconds", "us_per_row", "rows_per_s", "repeats")}
            self.add(doc["name"], doc["group"], doc["rows"], doc["samples"], doc["description"], **extra)

    def measure_orbital(self):
        """The same deployed models compiled by a peer, orbital, in an environment of its own (bench/peer.py)."""
        for model_name in (LINEAR_MODEL, FOREST_MODEL):
            if model_name not in self._models_on_disk:
                self.client_model(model_name)              # checked against its sha256, written to disk
        try:
            results, findings = peer.run(self.conn, self._models_on_disk, self.sizes, log=self.log)
        except Exception as error:                                # noqa: BLE001 — reported, then stop
            raise BenchError(f"the orbital comparison (pgmlkit.bench.peer) failed: {type(error).__name__}: {error}") from error
        self.checks["orbital"] = findings
        for result in results:
            self.add(result.name, result.group, result.rows, result.samples, result.description, **result.extra)

    # ---- models: complexity vs speed vs accuracy vs memory ---------------------------------------
    def measure_models(self):
        s = self.sizes
        a, i, c = PROBE
        baseline_kb = min(backend_memory_after() for _ in range(2))   # PL/Python started, nothing imported
        for algorithm in ALGORITHMS:
            name = MODEL_NAMES[algorithm]
            estimator, size, r2, fit = self.conn.execute(
                "SELECT v.algorithm, octet_length(v.model_data), (v.metrics->>'r2')::float8,"
                " (v.metrics->>'fit_seconds')::float8"
                " FROM ml_models m JOIN ml_model_versions v USING (model_name, version) WHERE m.model_name = %s",
                [name]).fetchone()
            per_row = self.time_sql(per_row_sql(f"ml_predict_sklearn('{name}', {FEATURES_SQL})"),
                                    [s.model_row[algorithm]])
            batch = statistics.median(self.time_sql(
                batch_sql(f"ml_predict_sklearn_batch('{name}', array_agg({FEATURES_SQL}))"), [s.model_batch]))
            first = f"SELECT ml_predict_sklearn('{name}', ARRAY[{a}, {i}, {c}]::float8[])"
            # A new connection: time the first prediction, then read the backend's memory.
            colds, _, memory = cold_start(first, s.cold_repeats, warmup=0,
                                          then="SELECT rss_anon_kb FROM backend_memory()")
            loaded_kb = statistics.median(m[0][0] for m in memory)
            # Another new connection that only imports the libraries: what is left is the model itself.
            libraries_kb = backend_memory_after(*[f"SELECT plpython_import_seconds('{module}')"
                                                  for module in LIBRARY_MODULES[algorithm]])
            self.add(f"model_{algorithm}", "models", s.model_row[algorithm], per_row,
                     f"{estimator}: scikit-learn predict() per row; batch, accuracy, size, memory, cold start alongside",
                     model_name=name, algorithm=algorithm, estimator=estimator, pickled_bytes=size,
                     holdout_r2=r2, fit_seconds=fit, batch_rows=s.model_batch,
                     batch_us_per_row=batch / s.model_batch * 1e6, cold_start_seconds=statistics.median(colds),
                     memory_growth_kb=loaded_kb - baseline_kb, library_memory_kb=libraries_kb - baseline_kb,
                     model_memory_kb=loaded_kb - libraries_kb, memory_baseline_kb=baseline_kb)

    # ---- training time vs rows -------------------------------------------------------------------
    def measure_training(self):
        s = self.sizes
        for algorithm, sizes in s.training.items():
            self.execute("SELECT * FROM training_cost(%s, %s)", [algorithm, 1_000])   # warm-up: imports
            for n in sizes:
                if n > s.table_rows:
                    continue
                repeats = s.repeats if n <= s.training_repeats_up_to else 1
                runs = [self.conn.execute("SELECT * FROM training_cost(%s, %s)", [algorithm, n]).fetchone()
                        for _ in range(repeats)]
                # columns: training_rows, fetch_seconds, fit_seconds, total_seconds, pickled_bytes, holdout_r2
                self.add(f"train_{algorithm}_{n}", "training", n, [run[3] for run in runs],
                         f"train_purchase_model('{algorithm}') on {n:,} rows (fetch + fit + pickle + register)",
                         algorithm=algorithm, fetch_seconds=statistics.median(run[1] for run in runs),
                         fit_seconds=statistics.median(run[2] for run in runs),
                         pickled_bytes=runs[-1][4], holdout_r2=runs[-1][5])

    # ---- run -------------------------------------------------------------------------------------
    def run(self, only: set[str] | None = None) -> dict:
        """Every step in order (or, with `only`, the steps named there and the ALWAYS ones)."""
        try:
            for number, step in enumerate(STEPS, 1):
                if only and step.name not in only and step.name not in ALWAYS:
                    continue
                self.log(f"[{number:2d}/{len(STEPS)}] {step.title}")
                getattr(self, step.method)()
        finally:
            with contextlib.suppress(Exception):
                self.stop_service()
            try:
                self.restore()
            except Exception as error:                             # noqa: BLE001 — say it, do not hide it
                self.log(f"  could not restore the database's previous state: {type(error).__name__}: {error}")
        return {"environment": self.environment(self.checks), "results": [r.as_json() for r in self.results],
                "targets": evaluate_targets(self.results)}

    def environment(self, checks) -> dict:
        server_versions = self.scalar("SELECT ml_library_versions()")
        info = self.conn.info
        cpu = "unknown"
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        memory_kb = None
        with contextlib.suppress(OSError, ValueError, IndexError):
            memory_kb = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        client = {}
        for package in ("scikit-learn", "numpy", "psycopg"):
            with contextlib.suppress(metadata.PackageNotFoundError):
                client[package] = metadata.version(package)
        commit = None
        with contextlib.suppress(Exception):
            commit = subprocess.run(["git", "-C", str(KIT_ROOT), "rev-parse", "--short", "HEAD"],
                                    capture_output=True, text=True, timeout=5).stdout.strip() or None
        return {
            "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "quick": self.quick,
            "postgresql": self.scalar("SHOW server_version"),
            "postgresql_version": self.scalar("SELECT version()"),
            "server_python": server_versions.get("python"),
            "server_packages": {k: v for k, v in server_versions.items() if k != "python"},
            "client_python": platform.python_version(),
            "client_packages": client,
            "cores": os.cpu_count(),
            "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "cpu_model": cpu,
            "memory_total_kb": memory_kb,
            "platform": platform.platform(),
            "database": {"host": info.host, "port": info.port, "dbname": info.dbname},
            "session_settings": {name: self.scalar(f"SHOW {name}") for name in SESSION_SETTINGS},
            "table_rows": self.sizes.table_rows,
            "train_rows": self.sizes.train_rows,
            "sizes": {k: v for k, v in self.sizes.__dict__.items()},
            "prediction_checks_max_abs_diff": checks,
            "kit_commit": commit,
            "duration_seconds": round(time.perf_counter() - self.started, 1),
        }


class Step(NamedTuple):
    name: str        # what --only takes
    title: str       # what the progress log shows
    method: str      # the Bench method that runs it


SCHEMA, DATA, CORRECTNESS = "schema", "data", "correctness"
STEPS = (
    Step(SCHEMA, "schema", "apply_sql"),
    Step(DATA, "data and models", "prepare"),
    Step(CORRECTNESS, "correctness", "check_predictions"),
    Step("per_row", "per-row paths", "measure_per_row"),
    Step("batch", "batch paths", "measure_batch"),
    Step("forest", "random forest", "measure_forest"),
    Step("inserts", "inserts and triggers", "measure_inserts"),
    Step("cold_starts", "cold starts", "measure_cold_starts"),
    Step("churn", "connection churn: direct vs PgBouncer", "measure_churn"),
    Step("client", "client and microservice", "measure_client"),
    Step("compiled", "models compiled to SQL (sql/10)", "measure_compiled"),
    Step("orbital", "the same models compiled to SQL by orbital (a peer, its own environment)", "measure_orbital"),
    Step("models", "models: complexity vs speed vs accuracy", "measure_models"),
    Step("training", "training time vs rows", "measure_training"),
)
ALWAYS = (SCHEMA, DATA, CORRECTNESS)     # every measurement needs the schema, the models and the proof
STEP_NAMES = tuple(step.name for step in STEPS)


def run_benchmark(quick: bool = False, only=None, log=None, conn=None) -> dict:
    """Run the benchmark on the kit's database (DATABASE_URL) and return the bench.json document."""
    from ..db import connect

    owned = conn is None
    conn = conn or connect()
    try:
        configure_session(conn)
        return Bench(conn, QUICK if quick else FULL, quick, log=log).run(only)
    finally:
        if owned:
            conn.close()
