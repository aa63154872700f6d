"""Where the kit's database is: one DATABASE_URL for notebooks, tests and scripts."""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

KIT_ROOT = Path(__file__).resolve().parents[2]
SQL_DIR = KIT_ROOT / "sql"


def kit_settings() -> dict[str, str]:
    """kit.env as a dict; an environment variable of the same name wins (as in scripts/common.sh)."""
    settings = {}
    for line in (KIT_ROOT / "kit.env").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        settings[key] = os.environ.get(key) or value
    return settings


def database_url(*, user: str | None = None, password: str | None = None, port: int | None = None) -> str:
    """DATABASE_URL if set, else the kit's own database on the kit's port.

    user/password/port give the same database as another role (notebook 09's demo logins) or on
    another server (the read replica of notebook 10).
    """
    if os.environ.get("DATABASE_URL"):
        url = os.environ["DATABASE_URL"]
    else:
        s = kit_settings()
        url = f"postgresql://{s['KIT_USER']}:{s['KIT_PASSWORD']}@localhost:{s['KIT_PORT']}/{s['KIT_DB']}"
    if user is None and password is None and port is None:
        return url
    parts = urlsplit(url)
    user = parts.username if user is None else user
    password = parts.password if password is None else password
    credentials = (user or "") + (f":{password}" if password else "") + ("@" if user else "")
    port = parts.port if port is None else port
    return urlunsplit(parts._replace(netloc=f"{credentials}{parts.hostname or 'localhost'}" + (f":{port}" if port else "")))


def replica_url() -> str:
    """The read replica's URL (notebook 10, `make replica`): same database and role, REPLICA_PORT's port."""
    return database_url(port=int(kit_settings()["REPLICA_PORT"]))


def sqlalchemy_url() -> str:
    """The same URL for JupySQL/SQLAlchemy, which needs the driver named: postgresql+psycopg://"""
    url = database_url()
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url
