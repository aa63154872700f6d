"""scikit-learn's fitted trees and tree ensembles, read once into one neutral form.

Both the Python predictors (predictors.py) and the SQL compiler (sql_compiler.py) are generated
from an `Ensemble`, so there is one place that knows scikit-learn's internals (tree_.feature,
_predictors' node arrays, _raw_predict_init, ...) and one definition of "same result as predict()":

    prediction = (base + leaf of tree 1 + leaf of tree 2 + ...) / divisor

summed in scikit-learn's order, with every split written as `x[feature] <op> cut` on float64 x.
scikit-learn's own trees compare float32(x) <= threshold; each such split is rewritten into the
exact float64 comparison that sends every float64 x to the same side (see float32_split).
"""
from __future__ import annotations

from dataclasses import dataclass

# numpy is imported by the functions that read a fitted model: a session that predicts from the
# registry's linear coefficients never loads it (a new connection's first prediction stays fast).


AVERAGED_TREES = ("DecisionTreeRegressor", "ExtraTreeRegressor", "RandomForestRegressor", "ExtraTreesRegressor")
BOOSTED_TREES = ("GradientBoostingRegressor", "HistGradientBoostingRegressor")
TREE_KINDS = AVERAGED_TREES + BOOSTED_TREES


class Unsupported(ValueError):
    """A model this module (or a compiler fed by it) cannot represent exactly; the message says why."""


@dataclass(frozen=True)
class Tree:
    """Node i is a leaf when feature[i] < 0 (value[i] is its output); otherwise the walk goes to
    left[i] when x[feature[i]] <op[i]> cut[i], else to right[i]. op is "<=" or "<". Root: node 0."""
    feature: tuple[int, ...]
    op: tuple[str, ...]
    cut: tuple[float, ...]
    left: tuple[int, ...]
    right: tuple[int, ...]
    value: tuple[float, ...]

    @property
    def nodes(self) -> int:
        return len(self.feature)

    def depth(self) -> int:
        """Splits on the longest path from the root to a leaf (an iterative walk: trees may be deep)."""
        deepest, stack = 0, [(0, 0)]
        while stack:
            i, depth = stack.pop()
            if self.feature[i] < 0:
                deepest = max(deepest, depth)
            else:
                stack += [(self.left[i], depth + 1), (self.right[i], depth + 1)]
        return deepest


@dataclass(frozen=True)
class Ensemble:
    kind: str                   # the estimator's class name
    trees: tuple[Tree, ...]
    base: float
    divisor: int

    @property
    def nodes(self) -> int:
        return sum(t.nodes for t in self.trees)

    def depth(self) -> int:
        return max(t.depth() for t in self.trees)

    def size(self) -> str:
        return f"{len(self.trees)} tree{'s' if len(self.trees) != 1 else ''}, {self.nodes:,} nodes"


def float32_split(threshold: float) -> tuple[str, float]:
    """(op, cut) with  x <op> cut  ⇔  float32(x) <= threshold, for every float64 x."""
    import numpy as np
    f = np.float32(threshold)
    if float(f) > threshold:
        f = np.nextafter(f, np.float32(-np.inf))          # the largest float32 <= threshold
    g = np.nextafter(f, np.float32(np.inf))
    cut = (float(f) + float(g)) / 2                        # exact in float64: where float32() rounds
    even = int(np.array(f, dtype=np.float32).view(np.uint32)) & 1 == 0
    return ("<=" if even else "<"), cut                    # at the cut itself it rounds to the even one


def _sklearn_tree(tree, scale: float = 1.0) -> Tree:
    """A sklearn.tree._tree.Tree (float32 comparisons); leaf values times `scale` as sklearn does."""
    if tree.n_outputs != 1:
        raise Unsupported("multi-output trees are not supported")
    values = tree.value[:, 0, 0]
    if scale != 1.0:
        values = scale * values                            # the multiplication sklearn does per prediction
    feature = [int(f) for f in tree.feature]
    splits = [float32_split(t) if f >= 0 else ("<=", 0.0) for f, t in zip(feature, tree.threshold.tolist())]
    return Tree(tuple(feature), tuple(op for op, _ in splits), tuple(cut for _, cut in splits),
                tuple(tree.children_left.tolist()), tuple(tree.children_right.tolist()), tuple(values.tolist()))


def _hist_tree(predictor) -> Tree:
    """One tree of a HistGradientBoostingRegressor: float64 comparisons, thresholds as they are."""
    nodes = predictor.nodes
    if nodes["is_categorical"].any():
        raise Unsupported("HistGradientBoostingRegressor with categorical splits")
    is_leaf = nodes["is_leaf"].tolist()
    feature = tuple(-1 if leaf else int(f) for leaf, f in zip(is_leaf, nodes["feature_idx"].tolist()))
    return Tree(feature, ("<=",) * len(feature), tuple(nodes["num_threshold"].tolist()),
                tuple(-1 if leaf else int(c) for leaf, c in zip(is_leaf, nodes["left"].tolist())),
                tuple(nodes["right"].tolist()), tuple(nodes["value"].tolist()))


def extract(model) -> Ensemble | None:
    """The model as an Ensemble; None if it is not one of scikit-learn's tree regressors;
    Unsupported if it is one but uses a feature this form cannot express exactly."""
    import numpy as np
    kind = type(model).__name__
    if kind not in TREE_KINDS or not type(model).__module__.startswith("sklearn."):
        return None
    if kind in AVERAGED_TREES:
        # RandomForest: y = 0, y += each tree's prediction, y /= n_estimators (a single tree: / 1)
        estimators = [model] if kind.endswith("TreeRegressor") else list(model.estimators_)
        return Ensemble(kind, tuple(_sklearn_tree(e.tree_) for e in estimators), 0.0, len(estimators))
    if kind == "GradientBoostingRegressor":
        if model.estimators_.shape[1] != 1:
            raise Unsupported("GradientBoostingRegressor with more than one output")
        if not (model.init_ == "zero" or type(model.init_).__name__ == "DummyRegressor"):
            raise Unsupported("GradientBoostingRegressor whose init estimator depends on the features")
        base = float(model._raw_predict_init(np.zeros((1, model.n_features_in_)))[0, 0])
        return Ensemble(kind, tuple(_sklearn_tree(stage[0].tree_, model.learning_rate) for stage in model.estimators_),
                        base, 1)
    if getattr(model, "_preprocessor", None) is not None or type(model._loss.link).__name__ != "IdentityLink":
        raise Unsupported("HistGradientBoostingRegressor with categorical features or a non-identity link")
    return Ensemble(kind, tuple(_hist_tree(p[0]) for p in model._predictors),
                    float(np.ravel(model._baseline_prediction)[0]), 1)
