"""scikit-learn's linear regressors, read once into one neutral form: intercept + Σ coefficient·x,
optionally after a StandardScaler ((x - centre) / scale, as a Pipeline does)."""
from __future__ import annotations

from dataclasses import dataclass

# numpy is imported by the functions that read a fitted model: a session that predicts from the
# registry's linear coefficients never loads it (a new connection's first prediction stays fast).


from .trees import Unsupported

# scikit-learn regressors whose predict() is exactly X @ coef_ + intercept_
LINEAR_REGRESSORS = frozenset({
    "LinearRegression", "Ridge", "RidgeCV", "Lasso", "LassoCV", "ElasticNet", "ElasticNetCV", "Lars", "LarsCV",
    "LassoLars", "LassoLarsCV", "LassoLarsIC", "BayesianRidge", "ARDRegression", "HuberRegressor", "SGDRegressor",
    "TheilSenRegressor", "QuantileRegressor", "OrthogonalMatchingPursuit", "LinearSVR"})


@dataclass(frozen=True)
class Linear:
    kind: str                               # e.g. "Ridge", or "Pipeline(StandardScaler, Ridge)"
    intercept: float
    coefficients: tuple[float, ...]
    centre: tuple[float, ...] | None = None  # set only for a Pipeline with a StandardScaler
    scale: tuple[float, ...] | None = None


def _is_sklearn(estimator, names) -> bool:
    return type(estimator).__name__ in names and type(estimator).__module__.startswith("sklearn.")


def _coefficients(estimator, kind: str) -> tuple[float, tuple[float, ...]]:
    import numpy as np
    coef, intercept = np.asarray(estimator.coef_, dtype=np.float64), np.asarray(estimator.intercept_)
    if coef.ndim != 1 or intercept.ndim != 0:
        raise Unsupported(f"{kind}: expected one coefficient per feature and one intercept")
    return float(intercept), tuple(coef.tolist())


def extract(model) -> Linear | None:
    """The model as a Linear; None if it is not linear at all; Unsupported if it is a Pipeline
    that is linear only in part."""
    import numpy as np
    kind = type(model).__name__
    if _is_sklearn(model, LINEAR_REGRESSORS):
        return Linear(kind, *_coefficients(model, kind))
    if not _is_sklearn(model, {"Pipeline"}):
        return None
    *scalers, (_, final) = model.steps
    for _, step in scalers:
        if type(step).__name__ != "StandardScaler":
            raise Unsupported(f"Pipeline step {type(step).__name__} (only StandardScaler steps before a linear model)")
    if len(scalers) > 1:
        raise Unsupported("more than one StandardScaler in a Pipeline")
    if not _is_sklearn(final, LINEAR_REGRESSORS):
        raise Unsupported(f"Pipeline ending in {type(final).__name__}")
    kind = f"Pipeline({', '.join(type(s).__name__ for _, s in model.steps)})"
    intercept, coefficients = _coefficients(final, kind)
    k = len(coefficients)
    centre, scale = (0.0,) * k, (1.0,) * k
    if scalers:
        step = scalers[0][1]
        if step.mean_ is not None:
            centre = tuple(np.asarray(step.mean_, dtype=np.float64).tolist())
        if step.scale_ is not None:
            scale = tuple(np.asarray(step.scale_, dtype=np.float64).tolist())
    return Linear(kind, intercept, coefficients, centre, scale)
