-- 05 — prediction functions: the talk's predict_purchase(), its two errors on a current stack and
-- their fix, then the kit's fast paths: a per-session model cache that still picks up a newly
-- deployed version at the caller's next statement, plain-Python arithmetic instead of sklearn's
-- predict() per row, batch scoring in one call, and a generic ml_predict() for any deployed model.
-- Apply with: psql "$DATABASE_URL" -f sql/05_prediction.sql    (idempotent; needs sql/02 and sql/04 first)
-- Then:       SELECT predict_purchase_cached(30, 60000, 720);

-- @block predict_purchase_as_on_the_slide
-- The talk's function, character for character. On a current stack it fails twice:
--   1. income arrives as decimal.Decimal (NUMERIC → Decimal) and scikit-learn multiplies it by a
--      float coefficient: TypeError: unsupported operand type(s) for *: 'decimal.Decimal' and 'float'
--   2. once the inputs are floats, prediction[0] is a numpy.float64, whose repr() is
--      "np.float64(…)" in NumPy 2 — and PL/Python turns a float into NUMERIC through repr():
--      invalid input syntax for type numeric: "np.float64(…)"
CREATE OR REPLACE FUNCTION predict_purchase(age INTEGER, income NUMERIC, credit_score INTEGER)
RETURNS NUMERIC AS $$
    import pickle
    from sklearn.linear_model import LinearRegression

    # Fetch the model
    model_data = plpy.execute("SELECT model_data FROM ml_models WHERE model_name = 'purchase_predictor'")[0]['model_data']
    model = pickle.loads(model_data)

    # Make prediction
    prediction = model.predict([[age, income, credit_score]])
    return prediction[0]
$$ LANGUAGE plpython3u;

-- @block predict_purchase
-- The talk's function with the two fixes, and STRICT (a NULL input gives a NULL prediction
-- without running Python; otherwise float(None) would raise). Still naive on purpose: every call
-- reads the model's bytes and unpickles them (~0.2 ms/row). It is VOLATILE, as on the slide,
-- because it declares nothing — see the kit's versions below for STABLE.
CREATE OR REPLACE FUNCTION predict_purchase(age INTEGER, income NUMERIC, credit_score INTEGER)
RETURNS NUMERIC STRICT AS $$
    import pickle
    from sklearn.linear_model import LinearRegression

    # Fetch the model
    model_data = plpy.execute("SELECT model_data FROM ml_models WHERE model_name = 'purchase_predictor'")[0]['model_data']
    model = pickle.loads(model_data)

    # Make prediction
    prediction = model.predict([[float(age), float(income), float(credit_score)]])   # fix 1: Decimal → float
    return float(prediction[0])                                                      # fix 2: numpy.float64 → float
$$ LANGUAGE plpython3u;

-- @block ml_predict_runtime
-- The code every fast prediction function shares, installed once per session into GD (the dict
-- all PL/Python functions of a session share). Prediction functions call it only on their slow
-- path — the first call of a statement — so its cost never appears per row.
--
-- GD["ml_fast"][model_name] holds one Entry per model: the deployed version it was built from,
-- the fastest correct way to evaluate it, and `marker`: the statement it was last checked in.
-- A prediction function compares the marker with its own statement_marker argument (see
-- ml_predict below); only when they differ does it run one SPI query for the deployed version.
--
-- Fast paths, each checked against scikit-learn's own predict() on probe rows before use:
--   linear models      → intercept + Σ coefficient·feature in plain Python (coefficients from the
--                        registry's `parameters` when present: no unpickling, no sklearn import)
--   tree models        → the fitted trees' arrays as Python lists, walked node by node
--                        (DecisionTree, RandomForest, ExtraTrees, GradientBoosting, HistGradientBoosting)
--   anything else      → the model's predict(), cached.
CREATE OR REPLACE FUNCTION ml_predict_runtime()
RETURNS void
LANGUAGE plpython3u
AS $$
# SD is reset whenever this function is (re)created: re-applying this file installs the new code
# once per session, and every later call is a no-op.
if SD.get("installed") and "ml_predict_runtime" in GD:
    return None

import json
import math
import time
import types

INF = math.inf
NAN = math.nan
# sklearn regressors whose predict() is exactly X @ coef_ + intercept_
LINEAR = {"LinearRegression", "Ridge", "RidgeCV", "Lasso", "LassoCV", "ElasticNet", "ElasticNetCV",
          "Lars", "LarsCV", "LassoLars", "LassoLarsCV", "LassoLarsIC", "BayesianRidge", "ARDRegression",
          "HuberRegressor", "SGDRegressor", "TheilSenRegressor", "QuantileRegressor",
          "OrthogonalMatchingPursuit", "LinearSVR"}
TREES_MEAN = {"DecisionTreeRegressor", "ExtraTreeRegressor", "RandomForestRegressor", "ExtraTreesRegressor"}


class Entry:
    """One deployed model, compiled for fast prediction in this session."""
    __slots__ = ("marker", "name", "version", "coefs", "predict", "batch", "n_features", "features",
                 "path", "loaded_at", "build_ms")


def linear_row_predictor(coefs):
    # b + a0*x[0] + a1*x[1] + ... as one generated expression: no loop, no zip, no numpy.
    # repr() of a float round-trips exactly, so the constants are the model's own.
    terms = " + ".join(f"{c!r} * x[{i}]" for i, c in enumerate(coefs[1:]))
    return eval(f"lambda x: {coefs[0]!r} + {terms}")


def linear_batch_predictor(coefs):
    # Same operations in the same order as the row predictor, so batch == per row, bit for bit.
    def batch(X):
        out = coefs[0] + coefs[1] * X[:, 0]
        for i, c in enumerate(coefs[2:], start=1):
            out = out + c * X[:, i]
        return out
    return batch


def tree_arrays(tree, scale=1.0):
    """A fitted sklearn tree_ as plain lists: feature (<0 at a leaf), threshold, left, right, value."""
    values = tree.value[:, 0, 0]
    if scale != 1.0:
        values = scale * values            # the same multiplication sklearn does per prediction
    return ([int(f) for f in tree.feature], tree.threshold.tolist(), tree.children_left.tolist(),
            tree.children_right.tolist(), values.tolist())


def hist_tree_arrays(predictor):
    nodes = predictor.nodes
    if nodes["is_categorical"].any():
        return None
    feature = [(-1 if leaf else int(f)) for leaf, f in zip(nodes["is_leaf"].tolist(), nodes["feature_idx"].tolist())]
    return (feature, nodes["num_threshold"].tolist(), nodes["left"].tolist(), nodes["right"].tolist(),
            nodes["value"].tolist())


def forest_row_predictor(trees, base, divisor):
    """Walk every tree for one row and combine as sklearn does: base + Σ leaf values [/ divisor]."""
    def predict(x):
        for v in x:                         # NaN/±Infinity: NaN, which the caller reports
            if not -INF < v < INF:
                return NAN
        total = base
        for feature, threshold, left, right, value in trees:
            node = 0
            f = feature[0]
            while f >= 0:
                node = left[node] if x[f] <= threshold[node] else right[node]
                f = feature[node]
            total += value[node]
        return total / divisor if divisor != 1 else total
    return predict


def compile_model(model):
    """(coefs or None, row predictor, batch predictor, path) for a fitted estimator."""
    import numpy as np
    kind = type(model).__name__
    from_sklearn = type(model).__module__.startswith("sklearn.")
    if from_sklearn and kind in LINEAR and np.ndim(model.coef_) == 1 and np.ndim(model.intercept_) == 0:
        coefs = (float(model.intercept_),) + tuple(float(c) for c in model.coef_)
        return coefs, linear_row_predictor(coefs), linear_batch_predictor(coefs), "linear coefficients"
    if from_sklearn and getattr(model, "n_outputs_", 1) == 1:
        trees = None
        if kind in TREES_MEAN:
            estimators = [model] if kind.endswith("TreeRegressor") else model.estimators_
            trees, base, divisor = [tree_arrays(e.tree_) for e in estimators], 0.0, len(estimators)
            if divisor == 1:
                divisor = 1
        elif kind == "GradientBoostingRegressor" and model.estimators_.shape[1] == 1:
            base = float(model._raw_predict_init(np.zeros((1, model.n_features_in_)))[0, 0])
            trees = [tree_arrays(stage[0].tree_, model.learning_rate) for stage in model.estimators_]
            divisor = 1
        elif (kind == "HistGradientBoostingRegressor" and getattr(model, "_preprocessor", None) is None
              and type(model._loss.link).__name__ == "IdentityLink"):
            arrays = [hist_tree_arrays(p[0]) for p in model._predictors]
            if all(a is not None for a in arrays):
                trees, base, divisor = arrays, float(np.ravel(model._baseline_prediction)[0]), 1
        if trees is not None:
            return None, forest_row_predictor(trees, base, divisor), sklearn_batch(model), \
                   f"compiled trees ({len(trees)})"
    return None, sklearn_row(model), sklearn_batch(model), "sklearn predict"


def sklearn_row(model):
    import numpy as np
    def predict(x):
        for v in x:
            if not -INF < v < INF:
                return NAN
        return float(model.predict(np.asarray([x], dtype=np.float64))[0])
    return predict


def sklearn_batch(model):
    import numpy as np
    return lambda X: np.asarray(model.predict(X), dtype=np.float64)


def probe_rows(k, training_range, features):
    """A few rows inside the training range (corners and middle), for the self-check."""
    import itertools
    import random
    if training_range and features and all(f in training_range for f in features):
        spans = [training_range[f] for f in features]
    else:
        spans = [[-1.0, 1.0]] * k
    rng = random.Random(0)
    rows = [[lo + (hi - lo) * rng.random() for lo, hi in spans] for _ in range(40)]
    if k <= 4:
        rows += [list(p) for p in itertools.product(*[(lo, (lo + hi) / 2, hi) for lo, hi in spans])]
    return rows


def self_check(model, predict, rows, name, version):
    """The fast path must give scikit-learn's answers (to 1e-9 relative) before it is used."""
    import numpy as np
    expected = np.asarray(model.predict(np.asarray(rows, dtype=np.float64)), dtype=np.float64)
    for row, want in zip(rows, expected.tolist()):
        got = predict(row)
        if not abs(got - want) <= 1e-9 * max(1.0, abs(want)):
            plpy.warning(f"fast path for model {name!r} version {version} gives {got!r} where scikit-learn "
                         f"gives {want!r} for {row}; using the model's own predict() instead")
            return False
    return True


def build(name, version, features_wanted=None):
    started = time.perf_counter()
    row = PLANS["meta"].execute([name, version])
    if not row:
        plpy.error(f"model {name!r} version {version} is deployed but not in ml_model_versions",
                   hint="Deploy a registered version: INSERT INTO ml_models ... SELECT ... FROM ml_model_versions.")
    row = row[0]
    algorithm, features = row["algorithm"], row["features"]
    parameters = json.loads(row["parameters"]) if row["parameters"] else None
    training_range = json.loads(row["training_range"]) if row["training_range"] else None
    e = Entry()
    e.name, e.version, e.marker = name, version, None
    if (algorithm in LINEAR and features and parameters and "intercept" in parameters
            and sorted(parameters.get("coefficients", {})) == sorted(features)):
        # The registry holds the learned numbers: no unpickling, no scikit-learn import (fast cold start).
        coefs = (float(parameters["intercept"]),) + tuple(float(parameters["coefficients"][f]) for f in features)
        e.coefs, e.predict, e.batch = coefs, linear_row_predictor(coefs), linear_batch_predictor(coefs)
        e.n_features, e.features, e.path = len(features), list(features), "linear coefficients (registry)"
    else:
        loaded = PLANS["load"].execute([name])[0]["version"]      # digest + library checks, then unpickle
        model = GD["ml_models"][(name, loaded)]
        e.version = loaded
        k = int(getattr(model, "n_features_in_", 0) or len(features or []))
        names = getattr(model, "feature_names_in_", None)
        e.features = [str(f) for f in names] if names is not None else (list(features) if features else None)
        e.n_features = k
        e.coefs, e.predict, e.batch, e.path = compile_model(model)
        if e.path != "sklearn predict":
            if not self_check(model, e.predict, probe_rows(k, training_range, e.features), name, loaded):
                e.coefs, e.predict, e.batch, e.path = None, sklearn_row(model), sklearn_batch(model), "sklearn predict"
        else:
            import numpy as np
            probe = model.predict(np.zeros((1, k)))
            if np.asarray(probe).dtype.kind not in "fiub":
                plpy.error(f"model {name!r} predicts {np.asarray(probe).dtype} values; ml_predict returns double precision",
                           hint="Use a regressor, or a classifier with numeric class labels.")
    if features_wanted is not None and e.features is not None and list(e.features) != list(features_wanted):
        plpy.error(f"model {name!r} version {e.version} expects features {e.features}, "
                   f"this function passes {list(features_wanted)}",
                   hint=f"Call ml_predict({name!r}, ARRAY[...]) with the features in the model's order.")
    if features_wanted is not None and e.n_features != len(features_wanted):
        plpy.error(f"model {name!r} version {e.version} expects {e.n_features} features, "
                   f"this function passes {len(features_wanted)}")
    e.loaded_at = time.time()
    e.build_ms = (time.perf_counter() - started) * 1000.0
    return e


def current(name, marker, features_wanted=None):
    """The Entry for the version of `name` deployed as this statement sees it; marked checked."""
    if name is None:
        plpy.error("model name is NULL", hint="Pass the model's name, e.g. 'purchase_predictor'.")
    found = PLANS["version"].execute([name])
    if not found or found[0]["version"] is None:
        plpy.error(f"no model named {name!r} is deployed",
                   hint=f"Train and deploy one: SELECT train_purchase_model({name!r});")
    version = found[0]["version"]
    entries = GD["ml_fast"]
    e = entries.get(name)
    if e is None or e.version != version:
        e = entries[name] = build(name, version, features_wanted)
    elif features_wanted is not None and e.features is not None and list(e.features) != list(features_wanted):
        e = entries[name] = build(name, version, features_wanted)     # raises the clear error
    e.marker = marker
    return e


def not_finite(name, version, features, result):
    plpy.error(f"model {name!r} version {version}: no finite prediction for features {list(features)} (got {result!r})",
               detail="NaN and ±Infinity are not valid feature values.",
               hint="Pass NULL for an unknown value: the prediction is then NULL.")


def wrong_length(name, e, n):
    plpy.error(f"model {name!r} version {e.version} expects {e.n_features} features"
               + (f" ({', '.join(e.features)})" if e.features else "") + f", got {n}",
               hint="Pass one value per feature, in the model's order: SELECT features FROM ml_model_versions.")


def batch_result(name, e, columns, row_of):
    """Predictions for k equal-length float64 columns. A row with a NULL feature (None in the
    input, NaN after conversion) gets None; a NaN/±Infinity that was really passed is an error."""
    import numpy as np
    n = len(columns[0])
    ok = np.isfinite(columns[0])
    for column in columns[1:]:
        ok &= np.isfinite(column)
    all_ok = bool(ok.all())
    if not all_ok:
        for i in np.flatnonzero(~ok).tolist():
            row = row_of(i)
            if None not in row:
                not_finite(name, e.version, row, NAN)
        columns = [column[ok] for column in columns]
    if e.coefs is not None:                 # same operations, same order as the row predictor
        c = e.coefs
        out = c[0] + c[1] * columns[0]
        for j in range(1, len(columns)):
            out = out + c[j + 1] * columns[j]
    elif len(columns[0]):
        out = e.batch(np.column_stack(columns))
    else:
        out = np.empty(0)
    finite = np.isfinite(out)
    if not finite.all():
        j = int(np.flatnonzero(~finite)[0])
        i = j if all_ok else int(np.flatnonzero(ok)[j])
        not_finite(name, e.version, row_of(i), float(out[j]))
    if all_ok:
        return out.tolist()
    result = [None] * n
    for i, value in zip(np.flatnonzero(ok).tolist(), out.tolist()):
        result[i] = value
    return result


PLANS = {
    "version": plpy.prepare("SELECT version FROM ml_models WHERE model_name = $1", ["text"]),
    "meta": plpy.prepare("SELECT algorithm, features, parameters, training_range FROM ml_model_versions"
                         " WHERE model_name = $1 AND version = $2", ["text", "integer"]),
    "load": plpy.prepare("SELECT ml_load_model($1) AS version", ["text"]),
}
runtime = types.SimpleNamespace(Entry=Entry, current=current, build=build, compile_model=compile_model,
                                batch_result=batch_result, not_finite=not_finite, wrong_length=wrong_length)
GD["ml_fast"] = {}
GD["ml_predict_runtime"] = runtime
SD["installed"] = True
return None
$$;

-- @block ml_predict_forget_checks
-- Another session's deployment is seen at this session's next statement (its marker changes).
-- A deployment made by *this* session, inside one statement (a DO block or function that
-- retrains and then predicts), is seen at once: this trigger clears the session's markers.
CREATE OR REPLACE FUNCTION ml_predict_forget_checks()
RETURNS trigger
LANGUAGE plpython3u
AS $$
for entry in GD.get("ml_fast", {}).values():
    entry.marker = None
return None
$$;
DROP TRIGGER IF EXISTS ml_predict_forget_checks ON ml_models;
CREATE TRIGGER ml_predict_forget_checks
    AFTER INSERT OR UPDATE OR DELETE ON ml_models
    FOR EACH STATEMENT EXECUTE FUNCTION ml_predict_forget_checks();

-- @block ml_predict
-- Predict with any deployed model: ml_predict('purchase_predictor', ARRAY[30, 60000, 720]).
-- statement_marker: leave it out. Its default is evaluated on every call (a few cheap C calls)
-- and changes with each statement (statement_timestamp()) and, inside a procedure that
-- COMMITs, with each transaction (now()). The function looks up the deployed version — one SPI
-- query — only when the marker changes: once per statement, never per row.
-- STABLE: one statement sees one model version (a retrain is seen at the next statement), which
-- is what STABLE promises. Not IMMUTABLE: a retrain changes the result for the same inputs.
-- PARALLEL SAFE: it only reads; each parallel worker is a new process and builds its own cache.
CREATE OR REPLACE FUNCTION ml_predict(
    model_name text,
    features double precision[],
    statement_marker double precision DEFAULT date_part('epoch', greatest(statement_timestamp(), now())))
RETURNS double precision
LANGUAGE plpython3u STABLE STRICT PARALLEL SAFE
AS $$
e = GD["ml_fast"].get(model_name) if "ml_fast" in GD else None
if e is None or e.marker != statement_marker:
    if "rt" not in SD:
        plpy.execute("SELECT ml_predict_runtime()")
        SD["rt"] = GD["ml_predict_runtime"]
    e = SD["rt"].current(model_name, statement_marker)
if len(features) != e.n_features:
    SD["rt"].wrong_length(model_name, e, len(features))
try:
    p = e.predict(features)
except TypeError:
    if None in features:
        return None                       # a NULL feature: unknown input, unknown prediction
    raise
if p - p == 0.0:                          # false for NaN and ±Infinity
    return p
SD["rt"].not_finite(model_name, e.version, features, p)
$$;

-- @block ml_predict_batch
-- Score many rows in one call. features is either
--   * a 2-D array, one row per sample:   array_agg(ARRAY[age, income, credit_score]::float8[] ORDER BY id)
--   * or a flat array in row-major order (n·k values: row 1's features, then row 2's, ...),
--     which PL/Python converts several times faster than a 2-D array.
-- Returns one prediction per row, in order; a row with a NULL feature gets NULL.
CREATE OR REPLACE FUNCTION ml_predict_batch(
    model_name text,
    features double precision[],
    statement_marker double precision DEFAULT date_part('epoch', greatest(statement_timestamp(), now())))
RETURNS double precision[]
LANGUAGE plpython3u STABLE STRICT PARALLEL SAFE
AS $$
import numpy as np
e = GD["ml_fast"].get(model_name) if "ml_fast" in GD else None
if e is None or e.marker != statement_marker:
    if "rt" not in SD:
        plpy.execute("SELECT ml_predict_runtime()")
        SD["rt"] = GD["ml_predict_runtime"]
    e = SD["rt"].current(model_name, statement_marker)
k = e.n_features
if not features:
    return []
if isinstance(features[0], list):                          # 2-D: one inner list per row
    if len(features[0]) != k:
        SD["rt"].wrong_length(model_name, e, len(features[0]))
    flat = [v for row in features for v in row]
else:
    flat = features
    if len(flat) % k:
        plpy.error(f"ml_predict_batch: {len(flat)} values is not a whole number of rows of {k} features",
                   hint="Pass n rows × k features flattened row by row, or a 2-D array (one row per sample).")
X = np.array(flat, dtype=np.float64).reshape(-1, k)         # NULL (None) becomes NaN here
return SD["rt"].batch_result(model_name, e, [X[:, j] for j in range(k)], lambda i: flat[i * k:(i + 1) * k])
$$;

-- @block predict_purchase_sklearn_cached
-- Step 1 of making predict_purchase fast (for the timings in notebook 05): keep the unpickled
-- model in the session (ml_load_model caches it in GD) instead of unpickling it per call.
-- Each call still runs an SPI query (to see which version is deployed) and sklearn's predict(),
-- whose input validation alone costs ~0.1 ms for one row.
CREATE OR REPLACE FUNCTION predict_purchase_sklearn_cached(age integer, income double precision, credit_score integer)
RETURNS double precision
LANGUAGE plpython3u STABLE STRICT
AS $$
if "plan" not in SD:
    SD["plan"] = plpy.prepare("SELECT ml_load_model('purchase_predictor') AS version")
version = plpy.execute(SD["plan"])[0]["version"]
model = GD["ml_models"][("purchase_predictor", version)]
return float(model.predict([[age, income, credit_score]])[0])
$$;

-- @block predict_purchase_checked_per_row
-- Step 2: plain-Python arithmetic on the cached coefficients instead of sklearn's predict(),
-- but still one SPI query per row to see which version is deployed. The SPI query is now most
-- of the cost — which is what the statement marker of predict_purchase_cached removes.
CREATE OR REPLACE FUNCTION predict_purchase_checked_per_row(age integer, income double precision, credit_score integer)
RETURNS double precision
LANGUAGE plpython3u STABLE STRICT
AS $$
if "rt" not in SD:
    plpy.execute("SELECT ml_predict_runtime()")
    SD["rt"] = GD["ml_predict_runtime"]
e = SD["rt"].current("purchase_predictor", None, ("age", "income", "credit_score"))
c = e.coefs
if c is not None:
    return c[0] + c[1] * age + c[2] * income + c[3] * credit_score
return e.predict((age, income, credit_score))
$$;

-- @block predict_purchase_cached
-- The kit's per-row prediction: same inputs as the talk's function (income as float8 — a NUMERIC
-- column casts to it implicitly), same model, ~1% of the cost.
--   * the model is cached per session (GD["ml_fast"], shared with ml_predict);
--   * a linear model is evaluated as intercept + Σ coefficient·feature in plain Python;
--   * statement_marker (leave it out) makes the function look up the deployed version once per
--     statement, so a model deployed by another session is used from this session's next statement.
-- STABLE, STRICT (NULL in → NULL out), PARALLEL SAFE: see ml_predict.
CREATE OR REPLACE FUNCTION predict_purchase_cached(
    age integer,
    income double precision,
    credit_score integer,
    statement_marker double precision DEFAULT date_part('epoch', greatest(statement_timestamp(), now())))
RETURNS double precision
LANGUAGE plpython3u STABLE STRICT PARALLEL SAFE
AS $$
e = SD.get("e")
if e is None or e.marker != statement_marker:          # first call of this statement
    if "rt" not in SD:
        plpy.execute("SELECT ml_predict_runtime()")
        SD["rt"] = GD["ml_predict_runtime"]
    e = SD["e"] = SD["rt"].current("purchase_predictor", statement_marker, ("age", "income", "credit_score"))
c = e.coefs
if c is not None:
    p = c[0] + c[1] * age + c[2] * income + c[3] * credit_score
else:
    p = e.predict((age, income, credit_score))        # a non-linear model deployed under this name
if p - p == 0.0:                                       # false for NaN and ±Infinity
    return p
SD["rt"].not_finite("purchase_predictor", e.version, (age, income, credit_score), p)
$$;

-- @block predict_purchase_batch
-- Bulk scoring in one call: three equally long arrays in, one prediction per position out
-- (NULL where an input is NULL). Join the predictions back to their rows by position:
--   WITH batch AS (SELECT array_agg(id ORDER BY id) AS ids,
--                         predict_purchase_batch(array_agg(age ORDER BY id), array_agg(income ORDER BY id),
--                                                array_agg(credit_score ORDER BY id)) AS predictions
--                    FROM customer_data)
--   SELECT p.id, p.predicted_purchase
--     FROM batch, unnest(batch.ids, batch.predictions) AS p(id, predicted_purchase);
CREATE OR REPLACE FUNCTION predict_purchase_batch(
    age integer[],
    income double precision[],
    credit_score integer[],
    statement_marker double precision DEFAULT date_part('epoch', greatest(statement_timestamp(), now())))
RETURNS double precision[]
LANGUAGE plpython3u STABLE STRICT PARALLEL SAFE
AS $$
import numpy as np
n = len(age)
if len(income) != n or len(credit_score) != n:
    plpy.error(f"predict_purchase_batch: the arrays have different lengths "
               f"(age {len(age)}, income {len(income)}, credit_score {len(credit_score)})",
               hint="Build all three in the same query with the same ORDER BY, "
                    "e.g. array_agg(age ORDER BY id), array_agg(income ORDER BY id), array_agg(credit_score ORDER BY id).",
               sqlstate="2202E")
if n and isinstance(age[0], list) or n and isinstance(income[0], list) or n and isinstance(credit_score[0], list):
    plpy.error("predict_purchase_batch takes one-dimensional arrays", sqlstate="2202E")
e = SD.get("e")
if e is None or e.marker != statement_marker:
    if "rt" not in SD:
        plpy.execute("SELECT ml_predict_runtime()")
        SD["rt"] = GD["ml_predict_runtime"]
    e = SD["e"] = SD["rt"].current("purchase_predictor", statement_marker, ("age", "income", "credit_score"))
if n == 0:
    return []
columns = [np.array(age, dtype=np.float64), np.array(income, dtype=np.float64),
           np.array(credit_score, dtype=np.float64)]                  # a NULL element becomes NaN
return SD["rt"].batch_result("purchase_predictor", e, columns, lambda i: [age[i], income[i], credit_score[i]])
$$;

-- @block ml_predict_cache
-- What this session has cached: which version of which model, and how it is evaluated.
CREATE OR REPLACE FUNCTION ml_predict_cache()
RETURNS TABLE (model_name text, version integer, path text, n_features integer, features text[],
               build_ms double precision, loaded_at timestamptz)
LANGUAGE plpython3u VOLATILE
AS $$
import datetime
return [(e.name, e.version, e.path, e.n_features, e.features, e.build_ms,
         datetime.datetime.fromtimestamp(e.loaded_at, datetime.timezone.utc).isoformat())
        for e in GD.get("ml_fast", {}).values()]
$$;
