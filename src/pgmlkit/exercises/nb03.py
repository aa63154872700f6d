"""Checks for notebook 03 (serialisation)."""
from __future__ import annotations

import hashlib
import json
import pickle
import struct

from . import exercise

FEATURES = ["age", "income", "credit_score"]
_LOADED: list[str] = []          # _record_load appends here when a pickle made by _Tripwire is loaded


def _record_load(tag: str) -> str:
    _LOADED.append(tag)
    return tag


class _Tripwire:
    """Pickles to "call _record_load": loading it leaves a trace, so the check sees whether
    verified_loads unpickled bytes before checking their digest."""
    def __reduce__(self):
        return (_record_load, ("loaded",))


@exercise("03.1")
def verified_loads(answer):
    if not callable(answer):
        return False, f"the answer should be your function verified_loads, got {type(answer).__name__}."
    good = pickle.dumps({"coefficients": [12.0, 0.015, 2.0]})
    digest = hashlib.sha256(good).hexdigest()

    if answer(good, digest) != pickle.loads(good):
        return False, "with the right digest, the function should return pickle.loads(data)."
    try:
        same = answer(good, digest.upper()) == pickle.loads(good)
    except ValueError:
        same = False
    if not same:
        return False, "an upper-case hex digest is the same digest: compare case-insensitively."

    tampered = bytearray(good)
    last_number = good.index(struct.pack(">d", 2.0))   # pickle stores floats big-endian
    tampered[last_number + 7] ^= 1                      # 2.0 -> 2.0000000000000004: still a valid pickle
    try:
        answer(bytes(tampered), digest)
    except ValueError:
        pass
    except Exception as error:          # e.g. UnpicklingError: it loaded before checking
        return False, f"tampered bytes raised {type(error).__name__}, not ValueError: check the digest before loading."
    else:
        return False, "tampered bytes were accepted: compare hashlib.sha256(data).hexdigest() with the expected digest."

    _LOADED.clear()
    crafted = pickle.dumps(_Tripwire())
    try:
        answer(crafted, digest)         # the wrong digest for these bytes
    except ValueError:
        pass
    else:
        return False, "bytes with a wrong digest were accepted."
    finally:
        ran = bool(_LOADED)
        _LOADED.clear()
    if ran:
        return False, "the bytes were unpickled (their code ran) before the digest refused them: check first, then load."
    return True, "the digest is checked first; bytes that changed are refused before any of their code can run."


@exercise("03.2")
def json_coefficients(answer):
    import numpy as np
    from sklearn.linear_model import LinearRegression

    import pgmlkit

    if not isinstance(answer, str):
        return False, f"the answer should be the name you stored, as a string, got {type(answer).__name__}."
    with pgmlkit.connect() as conn:
        row = conn.execute("SELECT format, model_data, serialisation_demo_verify(name)"
                           " FROM serialisation_demo WHERE name = %s", [answer]).fetchone()
        if row is None:
            return False, f"serialisation_demo has no model named {answer!r}: store it with serialisation_demo_store()."
        stored_format, data, digest_ok = row
        if stored_format != "json":
            return False, f"{answer!r} is stored with format {stored_format!r}; store it with format 'json'."
        if not digest_ok:
            return False, f"the bytes of {answer!r} do not match their digest: store them again."
        try:
            doc = json.loads(data.decode("utf-8"))
        except ValueError:
            return False, f"the bytes of {answer!r} are not UTF-8 JSON: store json.dumps(document).encode()."
        if not isinstance(doc, dict):
            return False, "the JSON document should be an object with the keys model, features, intercept, coefficients."
        missing = {"model", "features", "intercept", "coefficients"} - set(doc)
        if missing:
            return False, f"the JSON document lacks the key(s) {sorted(missing)}."
        if sorted(doc["features"]) != sorted(FEATURES) or set(doc["coefficients"]) != set(FEATURES):
            return False, f"features and coefficients should name exactly {FEATURES}."

        # the truth, computed here: the same model, fitted on the same rows
        rows = conn.execute("SELECT age::float8, income::float8, credit_score::float8, purchase_amount::float8"
                            " FROM customer_data ORDER BY id").fetchall()
        data = np.array(rows)
        reference = LinearRegression().fit(data[:, :3], data[:, 3])
        probes = [(40, 60000, 700), (25, 20000, 550), (70, 130000, 820), (33, 45000, 690)]
        for age, income, credit_score in probes:
            expected = float(reference.predict(np.array([[age, income, credit_score]], dtype=float))[0])
            got = conn.execute("SELECT serialisation_demo_predict_sql(%s, %s, %s, %s)",
                               [answer, age, income, credit_score]).fetchone()[0]
            if got is None or abs(got - expected) > 1e-6 * max(1.0, abs(expected)):
                return False, (f"for age {age}, income {income}, credit score {credit_score} the stored coefficients "
                               f"predict {got}, the model predicts {expected:.4f}. Are these client_model's numbers, by name?")
    return True, "four numbers in JSON, verified by their digest and enough for SQL to predict without Python."
