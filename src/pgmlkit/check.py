"""The setup check (notebook 00 and `make check`): [ OK ] / [FAIL] lines, each failure naming its fix.

Compares three things that must agree: the pins in requirements/server.txt, what PL/Python
imports inside the server, and what this kernel imports. Once sql/04 has made the model registry,
it also reports every version the verified loader would refuse (unsigned, or not matching its signature).
"""
from __future__ import annotations

import platform
import re
import sys
from dataclasses import dataclass
from importlib import metadata

from .config import KIT_ROOT, database_url, kit_settings

CHECKED_PACKAGES = ("scikit-learn", "numpy", "pandas", "scipy", "joblib", "skops")
FIX_SERVER = "the server's packages differ from the pins: `make db-destroy && make db` rebuilds them from requirements/server.txt"
FIX_UNSIGNED = ("retrain each model (SELECT train_purchase_model(name);) so the training path signs it; a 'mismatch' means "
                "its bytes or coefficients changed after they were signed: find out who wrote them before anything else")
FIX_CLIENT = "the kernel's packages differ from the pins: `make clean && make venv` rebuilds .venv, then restart the kernel"


@dataclass
class Line:
    ok: bool
    text: str
    fix: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"[ OK ] {self.text}"
        return f"[FAIL] {self.text}\n       Fix: {self.fix}"


def pinned_versions() -> dict[str, str]:
    pins = {}
    for line in (KIT_ROOT / "requirements" / "server.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s#]+)", line)
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def client_environment() -> dict:
    packages = {}
    for name in CHECKED_PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {"python": platform.python_version(), "packages": packages}


def minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def compare(server: dict, client: dict, pins: dict[str, str], python_minor: str) -> list[Line]:
    """Pure comparison, so a test can hand it a mismatch and see it reported."""
    lines = [
        Line(minor(server["python"]) == python_minor,
             f"PL/Python runs Python {minor(server['python'])} (kit.env pins {python_minor})",
             "the server's PL/Python links another Python: use the Docker image, or Debian 12 for the native setup"),
        Line(minor(client["python"]) == python_minor,
             f"the kernel runs Python {minor(client['python'])} (kit.env pins {python_minor})",
             f"select the kernel 'Python {python_minor} (pg-ml-kit)' (Kernel > Change Kernel), created by `make venv`"),
    ]
    for name in CHECKED_PACKAGES:
        pin, on_server, in_kernel = pins.get(name), server["packages"].get(name), client["packages"].get(name)
        if on_server != pin:
            lines.append(Line(False, f"{name}: server has {on_server or 'nothing'}, pin is {pin}", FIX_SERVER))
        elif in_kernel != pin:
            lines.append(Line(False, f"{name}: kernel has {in_kernel or 'nothing'}, pin is {pin}", FIX_CLIENT))
        else:
            lines.append(Line(True, f"{name} {pin}: server == kernel == pin"))
    return lines


def registry_signatures(conn) -> list[Line]:
    """The model registry (sql/04 on) is signed: a version the verified loader would refuse is reported here,
    at set-up, not at the first prediction. Nothing to say before sql/04 has made the registry."""
    if not conn.execute("SELECT to_regprocedure('ml_private.model_signature_status(text, integer)')").fetchone()[0]:
        return []
    rows = conn.execute("SELECT model_name, version, ml_private.model_signature_status(model_name, version)"
                        "  FROM ml_model_versions ORDER BY model_name, version").fetchall()
    refused = [f"{name} v{version}: {status}" for name, version, status in rows if status != "valid"]
    if not refused:
        return [Line(True, f"model registry: {len(rows)} version(s), every one signed")]
    shown = ", ".join(refused[:5]) + (f", … {len(refused) - 5} more" if len(refused) > 5 else "")
    return [Line(False, f"model registry: {len(refused)} of {len(rows)} version(s) the loader will refuse ({shown})",
                 FIX_UNSIGNED)]


def run_checks(conn=None) -> list[Line]:
    """Connect, check plpython3u, ask the server for its environment, and compare."""
    import json

    from .db import connect, run_sql_file

    settings = kit_settings()
    try:
        conn = conn or connect()
    except ConnectionError as error:
        return [Line(False, f"cannot connect to {database_url()}", str(error).split("Fix: ")[-1])]
    lines = []
    server_major = conn.execute("SHOW server_version_num").fetchone()[0][:-4]
    lines.append(Line(server_major == settings["PG_MAJOR"],
                      f"connected to PostgreSQL {server_major} (kit.env pins {settings['PG_MAJOR']})",
                      "DATABASE_URL points at another server: unset it to use the kit's, or `make db`"))
    if not conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'plpython3u'").fetchone():
        lines.append(Line(False, "plpython3u is not installed in this database",
                          "`make db-reset`, or as a superuser: CREATE EXTENSION plpython3u;"))
        return lines
    lines.append(Line(True, "plpython3u is installed"))
    run_sql_file("00_setup_check.sql", conn)
    server = json.loads(conn.execute("SELECT kit_server_environment()::text").fetchone()[0])
    lines += compare(server, client_environment(), pinned_versions(), settings["PYTHON_MINOR"])
    return lines + registry_signatures(conn)


def main() -> int:
    lines = run_checks()
    for line in lines:
        print(line)
    failed = sum(not line.ok for line in lines)
    print(f"\n{len(lines) - failed} passed, {failed} failed" if failed else "\nAll checks passed.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
