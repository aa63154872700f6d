"""A fitted model as one SQL expression — linear: arithmetic; a tree: nested CASE; an ensemble: a sum
of CASEs — and the CREATE FUNCTION statement around it (sql/10's ml_compile_to_sql returns it).

The trees come from trees.extract, the same reading the Python predictors are generated from, so
SQL and Python compare every input with the same cut and sum the leaves in scikit-learn's order.
"""
from __future__ import annotations

import math
import re

from . import linear, trees
from .trees import Unsupported

__all__ = ["SUPPORTED", "Unsupported", "create_function", "expression", "parameters"]

SUPPORTED = ("linear regressors (LinearRegression, Ridge, Lasso, ...), a Pipeline of StandardScaler steps and one, "
             "DecisionTreeRegressor, ExtraTreeRegressor, RandomForestRegressor, ExtraTreesRegressor, "
             "GradientBoostingRegressor, HistGradientBoostingRegressor (numeric features)")
PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")     # needs no quoting, cannot inject anything


def literal(value) -> str:
    value = float(value)
    if not math.isfinite(value):
        raise Unsupported(f"it contains the non-finite number {value!r}")
    return repr(value)                                 # the shortest text that parses back to the same float8


def float8(value) -> str:
    """A float8 constant as a quoted literal: the parser turns '0.5'::float8 straight into a float8 constant,
    where a bare 0.5 is NUMERIC plus a cast that every planning of an inlined call folds again. For a forest
    of 10^5 nodes that halves what is stored and re-read per statement (measured in notebook 10)."""
    return f"'{literal(value)}'::float8"


def leaf(value) -> str:
    return float8(value)                              # float8, not numeric: the CASE and the sums stay float8


def tree_sql(tree: trees.Tree, features: list[str]) -> str:
    def node(i):
        if tree.feature[i] < 0:
            return leaf(tree.value[i])
        return (f"CASE WHEN {features[tree.feature[i]]} {tree.op[i]} {float8(tree.cut[i])} THEN {node(tree.left[i])}"
                f" ELSE {node(tree.right[i])} END")
    return node(0)


def ensemble_sql(ensemble: trees.Ensemble, features: list[str]) -> str:
    parts = [tree_sql(t, features) for t in ensemble.trees]
    if ensemble.base != 0.0:
        parts.insert(0, leaf(ensemble.base))
    total = " + ".join(parts)
    expression = f"({total}) / {ensemble.divisor}" if ensemble.divisor != 1 else total
    # CASE sends a NULL comparison to ELSE, which would give a number for an unknown input.
    test = " OR ".join(f"{f} IS NULL" for f in features)
    return f"CASE WHEN {test} THEN NULL ELSE {expression} END"


def linear_sql(form: linear.Linear, features: list[str]) -> str:
    if len(form.coefficients) != len(features):
        raise Unsupported(f"{form.kind}: expected one coefficient per feature and one intercept")
    terms = [literal(form.intercept)]
    for i, f in enumerate(features):
        x = f
        if form.centre is not None and form.centre[i] != 0.0:
            x = f"({x} - {literal(form.centre[i])})"
        if form.scale is not None and form.scale[i] != 1.0:
            x = f"({x} / {literal(form.scale[i])})"
        terms.append(f"{literal(form.coefficients[i])} * {x}")
    return "(" + " + ".join(terms) + ")"          # NULL in any term: NULL out, as SQL arithmetic does


def parameters(model, registry_features) -> list[str]:
    """The compiled function's parameter names: the registry's features, else the names it was fitted with."""
    names = getattr(model, "feature_names_in_", None)
    features = list(registry_features or ([str(n) for n in names] if names is not None else []))
    if not features:
        raise Unsupported("the registry names no features, so the function's parameters are unknown "
                          "(train it with train_purchase_model(), which records them)")
    for f in features:
        if not PLAIN_NAME.fullmatch(f):
            raise Unsupported(f"feature {f!r} is not a plain lower-case SQL name")
    if getattr(model, "n_features_in_", len(features)) != len(features):
        raise Unsupported(f"the model expects {model.n_features_in_} features, the registry names {len(features)}")
    return features


def expression(model, features: list[str]) -> tuple[str, str, int]:
    """(SQL expression, the model's kind, tree nodes written) for a fitted scikit-learn model."""
    kind = type(model).__name__
    if not type(model).__module__.startswith("sklearn."):
        raise Unsupported(f"{type(model).__module__}.{kind} is not a scikit-learn estimator")
    form = linear.extract(model)
    if form is not None:
        return linear_sql(form, features), form.kind, 0
    ensemble = trees.extract(model)
    if ensemble is not None:
        return ensemble_sql(ensemble, features), kind, ensemble.nodes
    raise Unsupported(f"{kind} is not supported")


def create_function(model, registry_features, function_name: str, model_name: str, version: int, sha256: str) -> str:
    """The CREATE FUNCTION statement: IMMUTABLE, PARALLEL SAFE and a SQL-standard body, so the planner inlines it."""
    if not PLAIN_NAME.fullmatch(function_name or ""):
        raise ValueError(f"{function_name!r} is not a plain lower-case SQL name")
    features = parameters(model, registry_features)
    body, kind, nodes = expression(model, features)
    arguments = ", ".join(f"{f} double precision" for f in features)
    return (f"CREATE OR REPLACE FUNCTION {function_name}({arguments})\n"
            f"RETURNS double precision\n"
            f"LANGUAGE sql IMMUTABLE PARALLEL SAFE\n"
            f"-- compiled from model {model_name} version {version} ({kind}, sha256 {sha256[:16]}…, {nodes} tree nodes)\n"
            f"RETURN {body}")
