"""src/pgmlkit_server without a database: the tree reader, the predictor factory and the SQL compiler.

What must hold, for every estimator the kit evaluates itself: the generated Python, the walked trees
and the SQL expression give what model.predict gives (to 1e-9 relative; trees exactly, even for
inputs placed on the float32 rounding boundary of every split); models the kit cannot evaluate
fall back to predict() or are refused with a reason; NaN and ±Infinity give NaN, never a number.
The SQL text is evaluated by a small parser of the only grammar the compiler writes (CASE, IS NULL,
OR, comparisons, + - * /, float8 literals), not by string matching.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
from sklearn.ensemble import (ExtraTreesRegressor, GradientBoostingRegressor, HistGradientBoostingRegressor,
                              RandomForestRegressor)
from sklearn.linear_model import Lasso, LinearRegression, LogisticRegression, Ridge
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeRegressor, ExtraTreeRegressor

from pgmlkit_server import linear, predictors, sql_compiler, trees

FEATURES = ["age", "income", "credit_score"]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.integers(18, 80, 300), rng.normal(60000, 20000, 300), rng.integers(300, 850, 300)])
    y = -1200 + 12 * X[:, 0] + 0.015 * X[:, 1] + 2 * X[:, 2] + rng.normal(0, 80, 300)
    return X.astype(np.float64), y


ESTIMATORS = {
    "LinearRegression": lambda: LinearRegression(),
    "Ridge": lambda: Ridge(alpha=2.0),
    "Lasso": lambda: Lasso(alpha=0.5, max_iter=10_000),
    "DecisionTreeRegressor": lambda: DecisionTreeRegressor(max_depth=7, random_state=0),
    "ExtraTreeRegressor": lambda: ExtraTreeRegressor(max_depth=7, random_state=0),
    "RandomForestRegressor": lambda: RandomForestRegressor(n_estimators=12, max_depth=6, random_state=0),
    "ExtraTreesRegressor": lambda: ExtraTreesRegressor(n_estimators=8, max_depth=6, random_state=0),
    "GradientBoostingRegressor": lambda: GradientBoostingRegressor(n_estimators=25, max_depth=3, random_state=0),
    "GradientBoostingRegressor(huber)": lambda: GradientBoostingRegressor(loss="huber", n_estimators=15, random_state=0),
    "HistGradientBoostingRegressor": lambda: HistGradientBoostingRegressor(max_iter=20, random_state=0),
}
TREE_MODELS = [name for name in ESTIMATORS if "Regression" not in name and name not in ("Ridge", "Lasso")]


@pytest.fixture(scope="module")
def fitted(data):
    X, y = data
    return {name: make().fit(X, y) for name, make in ESTIMATORS.items()}


def rows_near_training_values(X):
    """Ordinary rows, and rows whose features lie a float step either side of a training value."""
    steps = np.vstack([np.nextafter(X[:40], np.inf), np.nextafter(X[:40], -np.inf), (X[:40] + X[40:80]) / 2])
    return np.vstack([X, steps])


def boundary_rows(model, ensemble, base_row):
    """For every split: inputs at its cut, one float64 step either side, and at the raw threshold."""
    rows = []
    raw = model.tree_.threshold if hasattr(model, "tree_") else None
    for tree in ensemble.trees:
        for i, f in enumerate(tree.feature):
            if f < 0:
                continue
            values = [tree.cut[i], math.nextafter(tree.cut[i], -math.inf), math.nextafter(tree.cut[i], math.inf)]
            if raw is not None:
                values.append(float(raw[i]))
            for v in values:
                row = list(base_row)
                row[f] = v
                rows.append(row)
    return np.array(rows)


def assert_agrees(got, want, rel=1e-9):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    worst = float(np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want))))
    assert worst <= rel, f"largest relative difference {worst:.3e}"


# ---- a tiny evaluator for the SQL the compiler writes ----------------------------------------------
TOKEN = re.compile(r"\s*(?:'?(-?\d+(?:\.\d*)?(?:e[-+]?\d+)?)'?|(::float8)|(<=|<|\+|-|\*|/|\(|\))|([A-Za-z_][A-Za-z0-9_]*))")


def tokens(text):
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = TOKEN.match(text, pos)
        assert m and m.end() > pos, f"unexpected SQL at {text[pos:pos + 30]!r}"
        number, _cast, op, word = m.groups()   # a ::float8 cast changes nothing: Python floats are float8
        if number is not None:
            out.append(("num", float(number)))
        elif op is not None:
            out.append(("op", op))
        elif word is not None:
            out.append(("kw", word) if word in ("CASE", "WHEN", "THEN", "ELSE", "END", "IS", "NULL", "OR")
                       else ("name", word))
        pos = m.end()
    return out


def parse(text):
    """SQL expression -> a function of {feature: float or None}, evaluated as PostgreSQL would (float8)."""
    toks, at = tokens(text), [0]

    def peek():
        return toks[at[0]] if at[0] < len(toks) else (None, None)

    def take(kind=None, value=None):
        tok = peek()
        assert (kind is None or tok[0] == kind) and (value is None or tok[1] == value), (tok, kind, value)
        at[0] += 1
        return tok

    def level(operand, ops):
        """operand (op operand)*, left to right: + and - over terms, * and / over factors."""
        node = operand()
        while peek()[0] == "op" and peek()[1] in ops:
            op, right = take()[1], operand()
            node = (lambda a, b, op: lambda env: arith(op, a(env), b(env)))(node, right, op)
        return node

    def expr():
        return level(term, ("+", "-"))

    def term():
        return level(factor, ("*", "/"))

    def factor():
        kind, value = peek()
        if kind == "num":                          # its ::float8 cast was dropped by tokens()
            take()
            return lambda env: value
        if (kind, value) == ("kw", "NULL"):
            take()
            return lambda env: None
        if kind == "name":
            take()
            return lambda env: env[value]
        if (kind, value) == ("op", "("):
            take()
            node = expr()
            take("op", ")")
            return node
        take("kw", "CASE")
        take("kw", "WHEN")
        test = condition()
        take("kw", "THEN")
        then = expr()
        take("kw", "ELSE")
        otherwise = expr()
        take("kw", "END")
        return lambda env: then(env) if test(env) else otherwise(env)   # NULL (None) is not true: ELSE

    def condition():
        parts = [comparison()]
        while peek() == ("kw", "OR"):
            take()
            parts.append(comparison())
        return lambda env: any(p(env) for p in parts)

    def comparison():
        if peek()[0] == "name" and toks[at[0] + 1] == ("kw", "IS"):
            name = take()[1]
            take("kw", "IS")
            take("kw", "NULL")
            return lambda env: env[name] is None
        left = expr()
        op = take("op")[1]
        right = expr()
        compare = (lambda a, b: a <= b) if op == "<=" else (lambda a, b: a < b)
        return lambda env: None if left(env) is None or right(env) is None else compare(left(env), right(env))

    node = expr()
    assert at[0] == len(toks), f"unparsed SQL from token {at[0]}: {toks[at[0]:at[0] + 5]}"
    return node


def arith(op, a, b):
    if a is None or b is None:
        return None
    return {"+": a + b, "-": a - b, "*": a * b, "/": a / b}[op]


def sql_predictions(model, rows):
    expression, _, _ = sql_compiler.expression(model, FEATURES)
    evaluate = parse(expression)
    return [evaluate(dict(zip(FEATURES, row))) for row in np.asarray(rows).tolist()]


def test_the_evaluator_reads_the_compilers_grammar():
    f = parse("CASE WHEN a IS NULL OR b IS NULL THEN NULL ELSE "
              "(CASE WHEN a <= '1.5'::float8 THEN '2.0'::float8 ELSE -3.0::float8 END + 1e-05::float8) / 2 END")
    assert f({"a": 1.0, "b": 0.0}) == (2.0 + 1e-05) / 2
    assert f({"a": 2.0, "b": 0.0}) == (-3.0 + 1e-05) / 2
    assert f({"a": None, "b": 0.0}) is None
    assert parse("(-1.5 + 2.0 * (x - 1.0) / 4.0)")({"x": 3.0}) == -1.5 + 2.0 * (3.0 - 1.0) / 4.0


# ---- every estimator: generated Python, walked trees and SQL agree with predict() ------------------
@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_fast_paths_and_sql_agree_with_predict(fitted, data, name):
    model = fitted[name]
    rows = rows_near_training_values(data[0])
    want = model.predict(rows)
    p = predictors.predictor_for(model, 3)
    assert p.path.startswith("compiled trees" if name in TREE_MODELS else "linear coefficients"), p.path
    assert_agrees([p.predict(row) for row in rows.tolist()], want)
    assert_agrees(sql_predictions(model, rows), want)
    if name in TREE_MODELS:
        ensemble = trees.extract(model)
        walk, compiled = predictors.walked_trees(ensemble), predictors.compiled_trees(ensemble, 3)
        assert [walk(row) for row in rows.tolist()] == [compiled(row) for row in rows.tolist()]
        assert_agrees([walk(row) for row in rows.tolist()], want)
        assert_agrees(p.batch(rows), want)
    else:
        assert p.coefs == (float(model.intercept_), *map(float, model.coef_))
        columns = [rows[:, j] for j in range(3)]
        assert predictors.linear_columns(p.coefs, columns).tolist() == [p.predict(r) for r in rows.tolist()]


@pytest.mark.parametrize("name", ["DecisionTreeRegressor", "ExtraTreeRegressor", "RandomForestRegressor",
                                  "GradientBoostingRegressor"])
def test_inputs_on_the_float32_boundary_of_every_split_land_in_sklearns_leaf(fitted, name):
    """scikit-learn compares float32(x) <= threshold: a plain float64 x <= threshold would send the
    inputs between the threshold and its float32 rounding boundary the other way."""
    model = fitted[name]
    ensemble = trees.extract(model)
    rows = boundary_rows(model, ensemble, [45.0, 60000.0, 700.0])
    assert len(rows) > 30
    want = model.predict(rows).tolist()
    walk, compiled = predictors.walked_trees(ensemble), predictors.compiled_trees(ensemble, 3)
    assert [compiled(row) for row in rows.tolist()] == want
    assert [walk(row) for row in rows.tolist()] == want
    assert sql_predictions(model, rows) == want


def test_float32_split_is_exact_around_its_cut():
    for threshold in (0.1, 712.5, 69932.28, 1e-30, -3.7, 16777217.0):
        op, cut = trees.float32_split(threshold)
        for x in (cut, math.nextafter(cut, -math.inf), math.nextafter(cut, math.inf), threshold):
            goes_left = x <= cut if op == "<=" else x < cut
            assert goes_left == (float(np.float32(x)) <= threshold), (threshold, x)


def test_a_pipeline_of_a_scaler_and_a_linear_model_compiles_to_sql_and_predicts_through_sklearn(data):
    X, y = data
    model = make_pipeline(StandardScaler(), Ridge(alpha=3.0)).fit(X, y)
    form = linear.extract(model)
    assert form.kind == "Pipeline(StandardScaler, Ridge)" and form.centre == tuple(model[0].mean_.tolist())
    assert_agrees(sql_predictions(model, X), model.predict(X))
    assert predictors.predictor_for(model, 3).path == predictors.SKLEARN


# ---- big ensembles: walked first, compiled after N predictions ----------------------------------------
def test_a_big_ensemble_is_walked_then_compiled_with_the_same_results(fitted, data):
    model = fitted["RandomForestRegressor"]
    probes = predictors.probe_rows(3)                  # checking them against predict() counts too
    limits = dict(predictors.LIMITS, compile_now_max_nodes=0, compile_after_rows=len(probes) + 30)
    p = predictors.predictor_for(model, 3, probes, limits=limits)
    assert p.path.startswith("walked trees (12 trees,") and p.path.endswith(f"compiled after {len(probes) + 30} rows")
    rows = data[0][:40].tolist()
    got = [p.predict(row) for row in rows[:29]]
    assert p.path.startswith("walked trees") and p.upgrade is not None
    got += [p.predict(row) for row in rows[29:]]
    assert p.path.startswith("compiled trees (12 trees,") and p.upgrade is None
    assert got == [p.predict(row) for row in rows] == model.predict(np.array(rows)).tolist()


def test_trees_beyond_the_compile_limits_are_only_walked(fitted, data):
    model = fitted["GradientBoostingRegressor"]
    p = predictors.predictor_for(model, 3, limits=dict(predictors.LIMITS, compile_max_nodes=0))
    assert p.path.startswith("walked trees (25 trees,") and p.upgrade is None
    assert_agrees([p.predict(row) for row in data[0].tolist()], model.predict(data[0]))


# ---- what the kit cannot evaluate itself ----------------------------------------------------------------
def test_a_fast_path_that_disagrees_with_predict_is_replaced_by_predict(fitted, data):
    model = DecisionTreeRegressor(max_depth=4, random_state=0).fit(*data)
    model.predict = lambda X: DecisionTreeRegressor.predict(model, X) + 1.0   # what the trees no longer say
    warnings = []
    p = predictors.predictor_for(model, 3, warn=warnings.append)
    assert p.path == predictors.SKLEARN and len(warnings) == 1 and "where scikit-learn gives" in warnings[0]
    assert p.predict(data[0][0].tolist()) == float(model.predict(data[0][:1])[0])


def test_other_models_fall_back_to_predict_and_are_refused_by_the_compiler(data):
    X, y = data
    mlp = MLPRegressor(hidden_layer_sizes=(4,), max_iter=50, random_state=0).fit(X / X.max(axis=0), y)
    p = predictors.predictor_for(mlp, 3)
    assert p.path == predictors.SKLEARN and p.coefs is None
    assert p.predict(X[0].tolist()) == float(mlp.predict(X[:1])[0])
    assert p.batch(X[:5]).tolist() == mlp.predict(X[:5]).tolist()
    with pytest.raises(sql_compiler.Unsupported, match="MLPRegressor is not supported"):
        sql_compiler.expression(mlp, FEATURES)


def test_classifiers_with_text_labels_are_not_numeric(data):
    X, y = data
    labels = np.where(y > np.median(y), "high", "low")
    with pytest.raises(predictors.NotNumeric):
        predictors.predictor_for(LogisticRegression(max_iter=500).fit(X / X.max(axis=0), labels), 3)


def test_tree_models_the_reader_cannot_express_are_refused_with_a_reason(data):
    X, y = data
    two_outputs = DecisionTreeRegressor(max_depth=3).fit(X, np.column_stack([y, -y]))
    with pytest.raises(trees.Unsupported, match="multi-output"):
        trees.extract(two_outputs)
    init_from_features = GradientBoostingRegressor(n_estimators=5, init=LinearRegression()).fit(X, y)
    with pytest.raises(trees.Unsupported, match="init estimator"):
        trees.extract(init_from_features)
    assert predictors.predictor_for(init_from_features, 3).path == predictors.SKLEARN
    categorical = HistGradientBoostingRegressor(max_iter=5, categorical_features=[0]).fit(X.astype(int), y)
    with pytest.raises(sql_compiler.Unsupported, match="categorical"):
        sql_compiler.expression(categorical, FEATURES)
    assert trees.extract(LinearRegression().fit(X, y)) is None


def test_the_compiler_checks_names_and_feature_counts(fitted):
    model = fitted["LinearRegression"]
    with pytest.raises(sql_compiler.Unsupported, match="not a plain lower-case SQL name"):
        sql_compiler.create_function(model, ["age", "Income", "x"], "f", "m", 1, "0" * 64)
    with pytest.raises(sql_compiler.Unsupported, match="expects 3 features, the registry names 2"):
        sql_compiler.create_function(model, ["age", "income"], "f", "m", 1, "0" * 64)
    with pytest.raises(ValueError, match="plain lower-case"):
        sql_compiler.create_function(model, FEATURES, "f(); DROP TABLE x", "m", 1, "0" * 64)
    text = sql_compiler.create_function(fitted["RandomForestRegressor"], FEATURES, "rf_sql", "rf", 3, "ab" * 32)
    assert text.startswith("CREATE OR REPLACE FUNCTION rf_sql(age double precision, income double precision,")
    nodes = trees.extract(fitted["RandomForestRegressor"]).nodes
    assert f"-- compiled from model rf version 3 (RandomForestRegressor, sha256 {'ab' * 8}…, {nodes} tree nodes)" in text


# ---- NaN and ±Infinity ----------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_inputs_give_nan(fitted, data, bad):
    row = [45.0, bad, 700.0]
    for name in TREE_MODELS:
        ensemble = trees.extract(fitted[name])
        for predict in (predictors.predictor_for(fitted[name], 3).predict, predictors.walked_trees(ensemble),
                        predictors.compiled_trees(ensemble, 3)):
            assert math.isnan(predict(row)), name
    mlp = MLPRegressor(hidden_layer_sizes=(3,), max_iter=20, random_state=0).fit(data[0] / 1e5, data[1])
    assert math.isnan(predictors.sklearn_row(mlp)(row))
    # a linear model's arithmetic gives no finite number either; sql/05 turns that into an error
    assert not math.isfinite(predictors.predictor_for(fitted["LinearRegression"], 3).predict(row))
