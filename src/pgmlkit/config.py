"""Where the kit's database is: one DATABASE_URL for notebooks, tests and scripts."""
from __future__ import annotations

import os
from pathlib import Path

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


def database_url() -> str:
    """DATABASE_URL if set, else the kit's own database on the kit's port."""
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    s = kit_settings()
    return f"postgresql://{s['KIT_USER']}:{s['KIT_PASSWORD']}@localhost:{s['KIT_PORT']}/{s['KIT_DB']}"


def sqlalchemy_url() -> str:
    """The same URL for JupySQL/SQLAlchemy, which needs the driver named: postgresql+psycopg://"""
    url = database_url()
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url
