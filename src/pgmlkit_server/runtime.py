"""The prediction runtime of one session: sql/05's fast prediction functions call it on their slow
path — the first call of a statement — so none of this runs per row.

    GD["ml_fast"][model_name]   one Entry per model: the deployed version (and sha256) it was built
                                from, its Predictor (predictors.py), and `marker`, the statement it was
                                last checked in. A prediction function compares the marker with its
                                statement_marker argument; only when they differ does it ask, with one
                                SPI query, which version is deployed now (current()).
    GD["ml_predict_runtime"]    what install() returns: current, build, batch_result, not_finite,
                                wrong_length, limits (a session may lower limits, as the tests do).

A linear model with the registry's `parameters` (train_purchase_model writes them) is built from
them, once their signature is checked (ml_private.model_signature_status, sql/04): nothing is
unpickled and scikit-learn is not imported, so a new session predicts in milliseconds. Any other
model is loaded through ml_load_model() (sql/04), which checks it first.
plpy and GD are the calling session's, passed in: this module imports nothing of PL/Python's.
"""
from __future__ import annotations

import json
import time
import types
import warnings

from . import loader, predictors
from .linear import LINEAR_REGRESSORS
from .predictors import NAN, Predictor


class Entry(Predictor):
    """One deployed model, prepared for fast prediction in this session."""
    __slots__ = ("marker", "name", "version", "sha256", "n_features", "features", "loaded_at", "build_ms")


PLANS = {
    "deployed": ("SELECT m.version, v.model_sha256 FROM ml_models m"
                 " LEFT JOIN ml_model_versions v ON v.model_name = m.model_name AND v.version = m.version"
                 " WHERE m.model_name = $1", ["text"]),
    "meta": ("SELECT algorithm, features, parameters, training_range FROM ml_model_versions"
             " WHERE model_name = $1 AND version = $2", ["text", "integer"]),
    "load": ("SELECT ml_load_model($1) AS version", ["text"]),
    "signature": ("SELECT ml_private.model_signature_status($1, $2) AS status", ["text", "integer"]),
}


def install(plpy, GD):
    """A fresh runtime for this session (entries built by older code are never fresh again)."""
    plans = {name: plpy.prepare(sql, types_) for name, (sql, types_) in PLANS.items()}
    limits = dict(predictors.LIMITS)
    for old in GD.get("ml_fast", {}).values():
        old.marker = None
    GD["ml_fast"] = entries = {}

    def not_finite(name, version, features, result):
        plpy.error(f"model {name!r} version {version}: no finite prediction for features {list(features)} (got {result!r})",
                   detail="NaN and ±Infinity are not valid feature values.",
                   hint="Pass NULL for an unknown value: its prediction is NULL.", sqlstate="22023")

    def wrong_length(name, e, n):
        plpy.error(f"model {name!r} version {e.version} expects {e.n_features} features"
                   + (f" ({', '.join(e.features)})" if e.features else "") + f", got {n}",
                   hint="Pass one value per feature, in the model's order (ml_model_versions.features).",
                   sqlstate="22023")

    def build(name, version, sha256):
        started = time.perf_counter()
        row = plans["meta"].execute([name, version])[0]
        algorithm, features = row["algorithm"], row["features"]
        parameters = json.loads(row["parameters"]) if row["parameters"] else None
        training_range = json.loads(row["training_range"]) if row["training_range"] else None
        e = Entry()
        e.name, e.version, e.sha256, e.marker = name, version, sha256, None
        if (algorithm in LINEAR_REGRESSORS and features and parameters and "intercept" in parameters
                and sorted(parameters.get("coefficients") or {}) == sorted(features)):
            # The registry holds the learned numbers: nothing to unpickle, no scikit-learn to import —
            # and they are signed with the bytes, so a hand-edited coefficient is refused like a planted pickle.
            status = plans["signature"].execute([name, version])[0]["status"]
            if status != "valid":
                plpy.error(f"model {name!r} version {version}: signature {status}; refusing to predict from its "
                           "registry coefficients", sqlstate="XX001",
                           hint=loader.FIX_SIGNED)           # the loader's refusal, word for word
            e.coefs = (float(parameters["intercept"]),) + tuple(float(parameters["coefficients"][f]) for f in features)
            e.predict, e.path = predictors.linear_row(e.coefs), "linear coefficients (registry)"
            e.n_features, e.features = len(features), list(features)
        else:
            loaded = plans["load"].execute([name])[0]["version"]        # digest + library checks, unpickling
            model = GD["ml_models"][(name, loaded)]
            e.version = loaded
            names = getattr(model, "feature_names_in_", None)
            e.features = [str(f) for f in names] if names is not None else (list(features) if features else None)
            e.n_features = int(getattr(model, "n_features_in_", 0) or len(e.features or []))
            warn = lambda message: plpy.warning(f"ml_predict: model {name!r} version {loaded}: {message}")  # noqa: E731
            try:
                predictors.prepare(e, model, e.n_features, predictors.probe_rows(e.n_features, training_range, e.features),
                                   limits, warn)
            except predictors.NotNumeric:
                plpy.error(f"model {name!r} version {loaded} predicts non-numeric values; ml_predict returns double precision",
                           hint="Use a regressor, or a classifier with numeric class labels.", sqlstate="42804")
            if e.path == predictors.SKLEARN:
                warnings.filterwarnings("ignore", message="X does not have valid feature names")
        e.loaded_at = time.time()
        e.build_ms = (time.perf_counter() - started) * 1000.0
        return e

    def current(name, marker, features_wanted=None):
        """The Entry for the version of `name` this statement sees as deployed, marked as checked."""
        if name is None:
            plpy.error("ml_predict: the model name is NULL", hint="For example: 'purchase_predictor'.", sqlstate="22004")
        found = plans["deployed"].execute([name])
        if not found or found[0]["version"] is None:
            plpy.error(f"no model named {name!r} is deployed",
                       hint=f"Train and deploy one: SELECT train_purchase_model({name!r});", sqlstate="P0002")
        version, sha256 = found[0]["version"], found[0]["model_sha256"]
        if sha256 is None:
            plpy.error(f"ml_models says model {name!r} version {version} is deployed, but the registry has no such version",
                       hint="Deploy a registered version: INSERT INTO ml_models (model_name, model_data, version) "
                            "SELECT model_name, model_data, version FROM ml_model_versions WHERE ...;", sqlstate="P0002")
        e = entries.get(name)
        if e is None or e.version != version or e.sha256 != sha256:
            e = entries[name] = build(name, version, sha256)
        if features_wanted is not None:
            if e.n_features != len(features_wanted) or (e.features is not None and list(e.features) != list(features_wanted)):
                plpy.error(f"model {name!r} version {e.version} expects the features "
                           f"{e.features if e.features is not None else e.n_features}, not {list(features_wanted)}",
                           hint=f"Use ml_predict({name!r}, ARRAY[...]) with the model's own features, "
                                "or deploy a model trained on these.", sqlstate="42804")
        e.marker = marker
        return e

    def batch_result(name, e, columns, row_of):
        """Predictions for k equally long float64 columns. A row with a NULL feature (None in the
        input, NaN once converted) gets None; a NaN or ±Infinity that was really passed is an error."""
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
        if e.coefs is not None:
            out = predictors.linear_columns(e.coefs, columns)
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

    return types.SimpleNamespace(current=current, build=build, batch_result=batch_result,
                                 not_finite=not_finite, wrong_length=wrong_length, limits=limits)
