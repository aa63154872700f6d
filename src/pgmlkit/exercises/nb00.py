"""Checks for notebook 00 (setup check)."""
from importlib import metadata

from . import exercise
from ._sql import single_value


@exercise("00.1")
def server_numpy_version(answer):
    value = single_value(answer)
    expected = metadata.version("numpy")   # the pins make server == kernel; the setup check proved it
    if str(value).strip('"') == expected:
        return True, f"the server imports numpy {expected}."
    return False, f"your query returned {value!r}; expected the version string {expected!r} (use ->> for text)."


@exercise("00.2")
def server_port(answer):
    import pgmlkit

    value = single_value(answer)
    with pgmlkit.connect() as conn:
        port = conn.execute("SELECT current_setting('port')").fetchone()[0]
    if str(value) == port:
        return True, f"the server listens on port {port}."
    return False, f"your query returned {value!r}, not the server's port."
