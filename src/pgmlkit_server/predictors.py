"""The predictor factory: the fastest correct way to evaluate one fitted model, one row at a time
(a Python function of a list of floats) and in batches (a function of a float64 matrix).

    linear regressors   intercept + Σ coefficient·feature as one generated expression: no loop, no numpy.
    tree ensembles      the trees of trees.extract, generated into one Python function of nested
                        comparisons with constants, leaves summed in scikit-learn's order (identical
                        results, not just close). A big ensemble is walked as nested tuples first and
                        generated after limits["compile_after_rows"] predictions: compiling 100 deep
                        trees takes a second or more, which a session predicting a few rows never pays.
    anything else       the model's own predict(), per row or per batch.

Every fast path is checked against the model's predict() on probe rows (to 1e-9 relative) before it
is used, and replaced by predict() if it disagrees. Nothing here touches the database.
"""
from __future__ import annotations

import itertools
import math
import random
import warnings

from . import linear, trees

INF, NAN = math.inf, math.nan
LIMITS = {"compile_now_max_nodes": 20_000,  # up to this, compile at once (~0.1 s)
          "compile_after_rows": 500,        # bigger: walk first, compile after this many predictions
          "compile_max_nodes": 600_000,     # beyond this, compiling takes too long: always walk
          "compile_max_depth": 60}          # Python's parser allows 200 nested parentheses
SKLEARN = "sklearn predict"


def warn_runtime(message: str) -> None:
    # RuntimeWarning: prepare() silences scikit-learn's UserWarnings, not this one.
    warnings.warn(message, RuntimeWarning, stacklevel=3)


class Predictor:
    """How one model is evaluated. coefs: (intercept, a1, a2, ...) for a linear model, else None;
    predict(row) -> float; batch(X) -> float64 array (None: use coefs); path: what was chosen;
    upgrade: None, or a call that replaces a walked ensemble by its compiled function now."""
    __slots__ = ("coefs", "predict", "batch", "path", "upgrade")

    def __init__(self):
        self.coefs = self.predict = self.batch = self.path = self.upgrade = None


# ---- linear models -----------------------------------------------------------------------------
def linear_row(coefs):
    # b + a0*x[0] + a1*x[1] + ... as one generated expression. repr() of a float round-trips
    # exactly, so the constants are the model's own.
    terms = "".join(f" + {c!r} * x[{i}]" for i, c in enumerate(coefs[1:]))
    return eval(f"lambda x: {coefs[0]!r}{terms}")


def linear_columns(coefs, columns):
    # The same operations in the same order as linear_row: batch == per row, bit for bit.
    out = coefs[0] + coefs[1] * columns[0]
    for j in range(1, len(columns)):
        out = out + coefs[j + 1] * columns[j]
    return out


# ---- tree ensembles ----------------------------------------------------------------------------
def tree_source(tree: trees.Tree, i: int = 0) -> str:
    if tree.feature[i] < 0:
        return repr(tree.value[i])
    return (f"({tree_source(tree, tree.left[i])} if x{tree.feature[i]} {tree.op[i]} {tree.cut[i]!r}"
            f" else {tree_source(tree, tree.right[i])})")


def ensemble_source(ensemble: trees.Ensemble, k: int) -> str:
    """def predict(x): one conditional expression per tree (~20 ns a node), summed in sklearn's order."""
    names = ", ".join(f"x{i}" for i in range(k)) + ("," if k == 1 else "")
    floats = ", ".join(f"float(x{i})" for i in range(k)) + ("," if k == 1 else "")
    lines = ["def predict(x):",
             f"    {names} = x",
             f"    {names} = {floats}   # float vs float: the fastest comparison",
             f"    if not ({' and '.join(f'-INF < x{i} < INF' for i in range(k))}):",
             "        return NAN",
             f"    total = {ensemble.base!r}"]
    lines += [f"    total += {tree_source(tree)}" for tree in ensemble.trees]
    lines.append(f"    return total / {ensemble.divisor!r}" if ensemble.divisor != 1 else "    return total")
    return "\n".join(lines)


def compiled_trees(ensemble: trees.Ensemble, k: int):
    namespace = {"INF": INF, "NAN": NAN}
    exec(compile(ensemble_source(ensemble, k), "<ml_predict trees>", "exec"), namespace)
    return namespace["predict"]


def nested(tree: trees.Tree, i: int = 0):
    """(feature, threshold, left, right), going left when x[feature] <= threshold; a leaf is
    (-1, value, None, None). x < cut becomes x <= the float just below cut: the same for every float."""
    if tree.feature[i] < 0:
        return (-1, tree.value[i], None, None)
    cut = tree.cut[i] if tree.op[i] == "<=" else math.nextafter(tree.cut[i], -INF)
    return (tree.feature[i], cut, nested(tree, tree.left[i]), nested(tree, tree.right[i]))


def walked_trees(ensemble: trees.Ensemble):
    """For ensembles too big to compile: walk nested tuples, one small tuple per level."""
    roots, base, divisor = [nested(t) for t in ensemble.trees], ensemble.base, ensemble.divisor

    def predict(x):
        for v in x:
            if not -INF < v < INF:
                return NAN
        total = base
        for f, t, left, right in roots:
            while f >= 0:
                f, t, left, right = left if x[f] <= t else right
            total += t                      # at a leaf, t is the leaf's value
        return total / divisor if divisor != 1 else total
    return predict


def walk_then_compile(p: Predictor, ensemble, k, probes, limits, warn):
    """A big ensemble starts walked (ready in a fraction of a second); after limits["compile_after_rows"]
    predictions it is compiled, if the compiled function agrees with the walker on the probe rows."""
    walk, size = walked_trees(ensemble), ensemble.size()
    remaining = [limits["compile_after_rows"]]

    def upgrade():
        p.upgrade = None
        try:
            compiled = compiled_trees(ensemble, k)
        except (SyntaxError, RecursionError, MemoryError):
            p.path = f"walked trees ({size})"
            return
        if all(compiled(row) == walk(row) for row in probes):
            p.predict, p.path = compiled, f"compiled trees ({size})"
        else:
            warn("compiled trees disagree with the walked ones; walking them")
            p.path = f"walked trees ({size})"

    def predict(x):
        remaining[0] -= 1
        if remaining[0] == 0 and p.upgrade is not None:
            p.upgrade()
        return walk(x)

    p.predict, p.upgrade = predict, upgrade
    p.path = f"walked trees ({size}); compiled after {limits['compile_after_rows']:,} rows"


# ---- any model ---------------------------------------------------------------------------------
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


class NotNumeric(TypeError):
    """The model predicts labels that are not numbers (a double precision result cannot hold them)."""


def use_sklearn(p: Predictor, model, k: int) -> None:
    import numpy as np
    if np.asarray(model.predict(np.zeros((1, k)))).dtype.kind not in "fiub":
        raise NotNumeric("the model predicts non-numeric values")
    p.coefs, p.predict, p.batch, p.path, p.upgrade = None, sklearn_row(model), sklearn_batch(model), SKLEARN, None


def fast_path(p: Predictor, model, k: int, probes, limits, warn) -> bool:
    """Fill p with a generated linear or tree predictor; False if the model has none."""
    try:
        form = linear.extract(model)
        ensemble = None if form is not None else trees.extract(model)
    except trees.Unsupported:
        return False
    if form is not None:
        if form.centre is not None:                  # a Pipeline: its scaling is left to predict()
            return False
        p.coefs = (form.intercept,) + form.coefficients
        p.predict, p.batch, p.path = linear_row(p.coefs), None, "linear coefficients"
        return True
    if ensemble is None:
        return False
    p.batch = sklearn_batch(model)                   # its vectorised predict() beats any Python loop
    size = ensemble.size()
    if ensemble.depth() <= limits["compile_max_depth"] and ensemble.nodes <= limits["compile_max_nodes"]:
        if ensemble.nodes > limits["compile_now_max_nodes"]:
            walk_then_compile(p, ensemble, k, probes, limits, warn)
            return True
        try:
            p.predict, p.path = compiled_trees(ensemble, k), f"compiled trees ({size})"
            return True
        except (SyntaxError, RecursionError, MemoryError):
            pass
    p.predict, p.path = walked_trees(ensemble), f"walked trees ({size})"
    return True


def probe_rows(k, training_range=None, features=None):
    """Rows inside the training range (a grid of corners and middles, plus random points)."""
    if training_range and features and all(f in training_range for f in features):
        spans = [training_range[f] for f in features]
    else:
        spans = [[-1.0, 1.0]] * k
    rng = random.Random(0)
    rows = [[lo + (hi - lo) * rng.random() for lo, hi in spans] for _ in range(50)]
    if k <= 4:
        rows += [list(p) for p in itertools.product(*[(lo, (lo + hi) / 2, hi) for lo, hi in spans])]
    return rows


def disagreement(model, predict, rows):
    """The first (row, got, wanted) where predict differs from model.predict by more than 1e-9 relative."""
    import numpy as np
    expected = np.asarray(model.predict(np.asarray(rows, dtype=np.float64)), dtype=np.float64)
    for row, want in zip(rows, expected.tolist()):
        got = predict(row)
        if not abs(got - want) <= 1e-9 * max(1.0, abs(want)):
            return row, got, want
    return None


def prepare(p: Predictor, model, k: int, probes, limits=None, warn=warn_runtime) -> Predictor:
    """Fill p with the fastest path that agrees with model.predict() on the probe rows, else predict() itself.
    Raises NotNumeric for a model whose predictions are not numbers."""
    limits = LIMITS if limits is None else limits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)       # "X does not have valid feature names"
        if fast_path(p, model, k, probes, limits, warn):
            wrong = disagreement(model, p.predict, probes)
            if wrong is None:
                return p
            row, got, want = wrong
            warn(f"the fast path gives {got!r} where scikit-learn gives {want!r} for {row}; "
                 "using the model's predict() instead")
        use_sklearn(p, model, k)
    return p


def predictor_for(model, k: int, probes=None, limits=None, warn=warn_runtime) -> Predictor:
    """A new Predictor for a fitted model with k features (probe rows in [-1, 1] unless given)."""
    return prepare(Predictor(), model, k, probes if probes is not None else probe_rows(k), limits, warn)
