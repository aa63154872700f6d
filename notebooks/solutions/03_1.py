import hashlib
import hmac


def verified_loads(data: bytes, expected_sha256: str):
    """pickle.loads(data), but only if data is exactly the bytes whose digest was recorded."""
    actual = hashlib.sha256(data).hexdigest()
    if not hmac.compare_digest(actual, expected_sha256.lower()):   # constant-time comparison
        raise ValueError(f"sha256 of the bytes is {actual}, expected {expected_sha256}; refusing to unpickle")
    return pickle.loads(data)       # only now: the bytes are the ones that were stored


answer = verified_loads
