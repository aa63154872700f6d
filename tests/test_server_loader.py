"""pgmlkit_server.loader without a database: every refusal, its SQLSTATE, and the order of the checks.

The canary: a pickle whose __reduce__ appends to a list here. If it is ever unpickled, the list grows.
"""
import hashlib
import json
import pickle

import pytest
from sklearn.linear_model import LinearRegression

from pgmlkit_server import loader

KEY = b"k" * 32
RAN = []


def _ran(marker):
    RAN.append(marker)
    return marker


class Canary:
    def __reduce__(self):
        return (_ran, ("the crafted pickle ran",))


@pytest.fixture(autouse=True)
def no_canary():
    RAN.clear()
    yield
    assert RAN == [], "a pickle was deserialised although the loader refused it"


def facts(data: bytes, *, name="m", version=1, versions=None, key=KEY, signature="sign", fmt="pickle", sha256=None):
    library_versions = json.dumps(versions if versions is not None else loader.running_versions())
    if signature == "sign":
        signature = loader.model_hmac(key, name, version, library_versions, data)
    return loader.Registered(name, version, sha256 or hashlib.sha256(data).hexdigest(), library_versions, signature, fmt)


def refusal(data, registered, key=KEY, **checks) -> loader.ModelRefused:
    with pytest.raises(loader.ModelRefused) as caught:
        loader.load_verified(data, registered, key, **checks)
    return caught.value


def test_a_genuine_signed_model_loads():
    data = pickle.dumps(LinearRegression().fit([[0], [1]], [0, 2]))
    model = loader.load_verified(data, facts(data), KEY)
    assert model.predict([[2]])[0] == pytest.approx(4)


def test_too_large_is_refused_first():
    data = pickle.dumps(Canary())
    error = refusal(data, facts(data, sha256="0" * 64, signature=None), key=None, max_bytes=len(data) - 1)
    assert error.sqlstate == "54000" and "max_model_bytes" in error.message and "ml_registry_limits" in error.hint


def test_a_digest_mismatch_is_refused_before_the_signature():
    data = pickle.dumps(Canary())
    error = refusal(data, facts(data, sha256="0" * 64, signature=None), key=None)
    assert error.sqlstate == "XX001"
    assert error.message == "model 'm' version 1: bytes do not match their sha256 digest; refusing to unpickle"


def test_no_key_is_refused_not_trusted():
    data = pickle.dumps(Canary())
    error = refusal(data, facts(data, signature=None), key=None)
    assert error.sqlstate == "XX001" and "no signing key" in error.message and "sql/04" in error.hint


def test_unsigned_is_refused():
    data = pickle.dumps(Canary())
    error = refusal(data, facts(data, signature=None))
    assert (error.sqlstate, error.message) == ("XX001", "model 'm' version 1: signature unsigned; refusing to unpickle")


@pytest.mark.parametrize("forged", [
    dict(key=b"x" * 32),                                   # signed with another key
    dict(name="other"),                                    # a signature moved from another model
    dict(version=2),                                       # ... or from another version
])
def test_a_signature_that_does_not_match_is_refused(forged):
    data = pickle.dumps(Canary())
    signature = facts(data, **forged).signature
    error = refusal(data, facts(data, signature=signature))
    assert (error.sqlstate, error.message) == ("XX001", "model 'm' version 1: signature mismatch; refusing to unpickle")


def test_the_signature_covers_the_library_versions():
    data = pickle.dumps(Canary())
    honest = facts(data)
    claimed = loader.Registered("m", 1, honest.sha256, json.dumps({"scikit-learn": "0.1"}), honest.signature)
    assert "signature mismatch" in refusal(data, claimed).message


@pytest.mark.parametrize("library", loader.CHECKED_LIBRARIES)
def test_another_library_version_is_refused_after_the_signature(library):
    data = pickle.dumps(Canary())
    versions = {**loader.running_versions(), library: "0.0.1"}
    error = refusal(data, facts(data, versions=versions))
    assert error.sqlstate == "55000"
    assert error.message == (f"model 'm' version 1 was trained with {library} 0.0.1, "
                             f"this server runs {loader.running_versions()[library]}")
    assert "retrain" in error.hint


def test_numpy_and_scipy_are_checked_only_where_recorded_but_scikit_learn_always():
    data = pickle.dumps(LinearRegression())
    only_sklearn = {"scikit-learn": loader.running_versions()["scikit-learn"]}
    loader.load_verified(data, facts(data, versions=only_sklearn), KEY)
    assert "scikit-learn None" in refusal(pickle.dumps(Canary()), facts(pickle.dumps(Canary()), versions={})).message


def test_the_checks_run_in_order_size_digest_signature_versions():
    """Everything wrong at once: each fix uncovers the next check, in the documented order."""
    data = pickle.dumps(Canary())
    old = {"scikit-learn": "0.0.1"}
    steps = [  # (what is still wrong, registered, key, max_bytes) -> the refusal expected
        (facts(data, sha256="0" * 64, signature=None, versions=old), None, 1, "max_model_bytes"),
        (facts(data, sha256="0" * 64, signature=None, versions=old), None, 10**9, "sha256"),
        (facts(data, signature=None, versions=old), None, 10**9, "no signing key"),
        (facts(data, signature=None, versions=old), KEY, 10**9, "signature unsigned"),
        (facts(data, versions=old), KEY, 10**9, "trained with scikit-learn 0.0.1"),
    ]
    for registered, key, max_bytes, expected in steps:
        assert expected in refusal(data, registered, key=key, max_bytes=max_bytes).message


def test_skops_untrusted_types_are_refused_and_joblib_goes_through_the_same_checks():
    import io
    import os

    import joblib
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    suspicious = sio.dumps(FunctionTransformer(func=os.system))
    error = refusal(suspicious, facts(suspicious, fmt="skops"))
    assert "types this loader does not trust" in error.message
    buffer = io.BytesIO()
    joblib.dump(Canary(), buffer)
    data = buffer.getvalue()
    assert "signature unsigned" in refusal(data, facts(data, signature=None, fmt="joblib")).message


def test_the_parameters_signature_covers_name_version_and_every_number():
    params = '{"intercept": 1.5, "coefficients": {"age": 2.0}}'
    signed = loader.parameters_hmac(KEY, "m", 1, params)
    assert signed == loader.parameters_hmac(KEY, "m", 1, params)
    for changed in (loader.parameters_hmac(KEY, "m", 1, params.replace("1.5", "1.6")),
                    loader.parameters_hmac(KEY, "m", 2, params), loader.parameters_hmac(KEY, "n", 1, params),
                    loader.parameters_hmac(b"another key of 32 bytes or more!!", "m", 1, params)):
        assert changed != signed
    # never equal to a signature of bytes that spell the same message without the "parameters" tag
    assert signed != loader.model_hmac(KEY, "m", 1, params, b"")
