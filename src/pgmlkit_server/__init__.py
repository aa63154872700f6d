"""pgmlkit_server: the kit's library that runs *inside* PostgreSQL, imported by PL/Python bodies.

Installed into the server-side environment by scripts/native_db.sh and docker/postgres/Dockerfile
(a copy, beside the pinned packages, with the pin file it was installed with as pins.txt), and into
the notebook kernel with the rest of src/, where its unit tests run without a database.
The sql/ files teach; the machinery they share lives here, so it is written, linted and tested once.
"""
from __future__ import annotations

from importlib import metadata
from pathlib import Path

__all__ = ["pin_mismatches"]


def _pins_file() -> Path:
    installed = Path(__file__).with_name("pins.txt")           # the server-side copy
    return installed if installed.exists() else Path(__file__).resolve().parents[2] / "requirements/server.txt"


def pin_mismatches(pins_file: Path | None = None) -> dict[str, tuple[str, str | None]]:
    """{package: (pinned, installed)} for every pin this Python does not run exactly; {} when all match."""
    mismatches = {}
    for line in (pins_file or _pins_file()).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" not in line:
            continue
        name, pinned = (part.strip() for part in line.split("==", 1))
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != pinned:
            mismatches[name] = (pinned, installed)
    return mismatches
