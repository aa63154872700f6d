"""The one place where model bytes become a Python object (pickle, joblib or skops).

Unpickling runs code chosen by whoever wrote the bytes, so nothing is deserialised until the
bytes have passed, in this order (cheapest and least trusting first):

1. size        -- larger than the registry's limit: refused before anything else (54000);
2. sha256      -- the bytes are the ones registered (XX001);
3. signature   -- an HMAC made on the training path with a key only superusers can read (XX001).
                  A digest stored beside the bytes proves nothing against someone who can write
                  both; the signature does. A registry without a key is refused too;
4. versions    -- scikit-learn, numpy and scipy as when the model was trained (55000).

`verify` and `deserialise` are pure Python (unit-tested without a database); `load` and
`load_deployed` are the PL/Python side: they read the registry with plpy, call them, and raise
a refusal as a plpy error (message, hint, SQLSTATE).
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import io
import json
import warnings
from dataclasses import dataclass
from importlib import metadata

__all__ = ["ModelRefused", "Registered", "model_hmac", "parameters_hmac", "verify", "deserialise", "load_verified",
           "load", "load_deployed", "MAX_MODEL_BYTES", "CHECKED_LIBRARIES"]

MAX_MODEL_BYTES = 50 * 1024 * 1024          # the default of ml_registry_limits (sql/04)
CHECKED_LIBRARIES = ("scikit-learn", "numpy", "scipy")   # what a pickled model's objects are rebuilt with
FORMATS = ("pickle", "joblib", "skops")

DATA_CORRUPTED = "XX001"
WRONG_STATE = "55000"                       # object_not_in_prerequisite_state
TOO_LARGE = "54000"                         # program_limit_exceeded
NOTHING_DEPLOYED = "P0002"                  # no_data_found
# Both refusals name a fix that exists from sql/04 on (ml_promote comes with sql/07).
FIX_SIGNED = ("Only the training path signs models: these bytes were written some other way. "
              "Retrain it (SELECT train_purchase_model(name);) or deploy a signed version (sql/07: SELECT ml_promote(name, version);).")
FIX_CHANGED = ("The bytes changed after they were stored. "
               "Retrain it (SELECT train_purchase_model(name);) or deploy a known-good version (sql/07: SELECT ml_promote(name, version);).")


class ModelRefused(Exception):
    """A refusal to load: message names the problem, hint the fix, sqlstate lets a caller catch it."""

    def __init__(self, message: str, hint: str, sqlstate: str):
        super().__init__(message)
        self.message, self.hint, self.sqlstate = message, hint, sqlstate


@dataclass(frozen=True)
class Registered:
    """What the registry says about one model version: everything checked before loading it."""
    model_name: str
    version: int | None                  # None for bytes outside the registry (sql/03's demo table)
    sha256: str
    library_versions: str                # the jsonb text as stored: it is part of the signed message
    signature: str | None                # hex HMAC made when the version was registered
    format: str = "pickle"

    @property
    def label(self) -> str:
        return f"model {self.model_name!r}" + ("" if self.version is None else f" version {self.version}")


def model_hmac(key: bytes, model_name: str, version: int | None, library_versions: str, data: bytes) -> str:
    """HMAC-SHA256 over name, version, library versions and bytes: a signed model cannot be moved
    to another name or version, nor claim other libraries. ml_private.model_hmac (sql/04) calls this."""
    message = f"{model_name}\x00{version}\x00{library_versions}\x00".encode() + bytes(data)
    return hmac.new(bytes(key), message, hashlib.sha256).hexdigest()


def parameters_hmac(key: bytes, model_name: str, version: int, parameters: str) -> str:
    """HMAC-SHA256 over the registry's learned numbers (ml_model_versions.parameters, jsonb text as stored):
    sql/05's linear fast path predicts from them without reading the bytes, so they are signed too.
    A message of its own kind ("parameters"), so it can never be mistaken for a signature of bytes."""
    message = f"parameters\x00{model_name}\x00{version}\x00{parameters}".encode()
    return hmac.new(bytes(key), message, hashlib.sha256).hexdigest()


def running_versions() -> dict[str, str]:
    return {library: metadata.version(library) for library in CHECKED_LIBRARIES}


def verify(data: bytes, registered: Registered, key: bytes | None, *, max_bytes: int = MAX_MODEL_BYTES,
           running: dict[str, str] | None = None) -> None:
    """Raise ModelRefused unless `data` may be deserialised. Reads no pickle: only lengths, digests, JSON."""
    label = registered.label
    if len(data) > max_bytes:
        raise ModelRefused(f"{label} is {len(data)} bytes, more than max_model_bytes ({max_bytes} bytes); refusing to load it",
                           "Train a smaller model, or raise the limit: UPDATE ml_registry_limits SET max_model_bytes = ...;",
                           TOO_LARGE)
    if hashlib.sha256(data).hexdigest() != registered.sha256:
        raise ModelRefused(f"{label}: bytes do not match their sha256 digest; refusing to unpickle",
                           FIX_CHANGED, DATA_CORRUPTED)
    if key is None:
        raise ModelRefused(f"{label}: the registry has no signing key, so no model can be verified; refusing to unpickle",
                           "Re-apply sql/04_training.sql as a superuser: it creates the key in ml_private.",
                           DATA_CORRUPTED)
    if registered.signature is None:
        raise ModelRefused(f"{label}: signature unsigned; refusing to unpickle", FIX_SIGNED, DATA_CORRUPTED)
    expected = model_hmac(key, registered.model_name, registered.version, registered.library_versions, data)
    if not hmac.compare_digest(expected, registered.signature):
        raise ModelRefused(f"{label}: signature mismatch; refusing to unpickle", FIX_SIGNED, DATA_CORRUPTED)
    if registered.format == "json":
        return                              # plain numbers: no library's classes are rebuilt
    trained_with = json.loads(registered.library_versions or "{}")
    running = running or running_versions()
    for library in CHECKED_LIBRARIES:
        # scikit-learn must always be recorded; numpy and scipy wherever the trainer recorded them.
        if (library == "scikit-learn" or library in trained_with) and trained_with.get(library) != running[library]:
            raise ModelRefused(f"{label} was trained with {library} {trained_with.get(library)}, "
                               f"this server runs {running[library]}",
                               "Pickles are only guaranteed to load in the versions that wrote them: retrain it "
                               "(SELECT train_purchase_model();), or run the same pins on every server.",
                               WRONG_STATE)


def deserialise(data: bytes, registered: Registered, skops_allowed: frozenset[str] = frozenset()) -> object:
    """Turn verified bytes into the model. Call only after verify(): this is where code can run."""
    label, fmt = registered.label, registered.format
    if fmt in ("pickle", "joblib"):
        from sklearn.exceptions import InconsistentVersionWarning
        with warnings.catch_warnings():
            # The pickle's own record of its scikit-learn, in case the registry row says otherwise.
            warnings.simplefilter("error", InconsistentVersionWarning)
            try:
                if fmt == "joblib":
                    import joblib
                    return joblib.load(io.BytesIO(bytes(data)))
                import pickle
                return pickle.loads(data)
            except InconsistentVersionWarning as warning:
                raise ModelRefused(f"{label}: the pickle itself records scikit-learn {warning.original_sklearn_version}; "
                                   f"this server runs {warning.current_sklearn_version}; refusing to use it",
                                   "Retrain the model with this server's scikit-learn.", WRONG_STATE) from None
    if fmt == "skops":
        import skops.io as sio
        untrusted = sio.get_untrusted_types(data=bytes(data))
        unexpected = sorted(set(untrusted) - skops_allowed)
        if unexpected:
            raise ModelRefused(f"{label}: the skops file needs types this loader does not trust: {unexpected}",
                               "Inspect them with skops.io.get_untrusted_types(); allow a type only if you know what it does.",
                               DATA_CORRUPTED)
        return sio.loads(bytes(data), trusted=untrusted)       # an explicit list, every entry checked above
    raise ModelRefused(f"{label}: unknown format {fmt!r}", "Use one of: " + ", ".join(FORMATS) + ".", "22023")


def load_verified(data: bytes, registered: Registered, key: bytes | None, **checks) -> object:
    """verify(), then deserialise(): the only way the kit turns bytes into a model."""
    skops_allowed = checks.pop("skops_allowed", frozenset())
    verify(data, registered, key, **checks)
    return deserialise(data, registered, skops_allowed)


# ---- PL/Python: read the registry, then the pure functions above ------------------------------------------
# Every query names its schema: the SQL functions calling these are SECURITY DEFINER (they read the
# key), and a caller's search_path must never put its own tables in the registry's place.
_REGISTERED = (
    "SELECT v.model_name, v.version, v.model_data, v.model_sha256, v.library_versions::text AS library_versions,"
    "       s.hmac, (SELECT k.key FROM ml_private.model_signing_key k) AS key,"
    "       coalesce((SELECT max_model_bytes FROM public.ml_registry_limits), $3) AS max_bytes"
    "  FROM public.ml_model_versions v"
    "  LEFT JOIN ml_private.model_signatures s ON s.model_name = v.model_name AND s.version = v.version"
    " WHERE v.model_name = $1 AND v.version = $2")
_DEPLOYED = ("SELECT m.version, v.model_sha256 FROM public.ml_models m"
             " LEFT JOIN public.ml_model_versions v ON v.model_name = m.model_name AND v.version = m.version"
             " WHERE m.model_name = $1")


def _refusals_as_plpy_errors(function):
    """A refusal reaches SQL as a plpy error with its message, hint and SQLSTATE (a Python exception
    of another class would arrive as XX000 with no hint)."""
    @functools.wraps(function)
    def wrapper(plpy, *args, **kwargs):
        try:
            return function(plpy, *args, **kwargs)
        except ModelRefused as refusal:
            plpy.error(refusal.message, hint=refusal.hint, sqlstate=refusal.sqlstate)
    return wrapper


def _plan(plpy, GD, name, query, types):
    plans = GD.setdefault("pgmlkit_server.loader.plans", {})
    if name not in plans:                                     # prepared once per session
        plans[name] = plpy.prepare(query, types)
    return plans[name]


@_refusals_as_plpy_errors
def deployed(plpy, GD, model_name: str) -> tuple[int, str]:
    """(version, registered sha256) of the version in use; reads no bytes (the cache's fast path)."""
    found = _plan(plpy, GD, "deployed", _DEPLOYED, ["text"]).execute([model_name])
    if not found or found[0]["version"] is None:
        raise ModelRefused(f"no model named {model_name!r} is deployed",
                           "Train and deploy one: SELECT train_purchase_model();", NOTHING_DEPLOYED)
    version, sha256 = found[0]["version"], found[0]["model_sha256"]
    if sha256 is None:
        raise ModelRefused(f"ml_models says model {model_name!r} version {version} is deployed, "
                           "but the registry has no such version",
                           "Deploy a registered version: INSERT INTO ml_models (model_name, model_data, version) "
                           "SELECT model_name, model_data, version FROM ml_model_versions WHERE ...;", NOTHING_DEPLOYED)
    return version, sha256


@_refusals_as_plpy_errors
def load(plpy, GD, model_name: str, version: int) -> tuple[str, object]:
    """(sha256, model) of one registered version, verified; bytes, digest and signature from one snapshot."""
    rows = _plan(plpy, GD, "registered", _REGISTERED, ["text", "integer", "bigint"]).execute(
        [model_name, version, MAX_MODEL_BYTES])
    if not rows:
        raise ModelRefused(f"model {model_name!r} has no version {version}",
                           f"See its versions: SELECT version FROM ml_model_versions WHERE model_name = '{model_name}';",
                           NOTHING_DEPLOYED)
    row = rows[0]
    registered = Registered(row["model_name"], row["version"], row["model_sha256"], row["library_versions"], row["hmac"])
    return registered.sha256, load_verified(row["model_data"], registered, row["key"], max_bytes=row["max_bytes"])


@_refusals_as_plpy_errors
def load_deployed(plpy, GD, model_name: str) -> tuple[int, str, object]:
    """(version, sha256, model) of the version in use, verified. No cache: see ml_load_model for that."""
    version, _ = deployed(plpy, GD, model_name)
    sha256, model = load(plpy, GD, model_name, version)
    return version, sha256, model

