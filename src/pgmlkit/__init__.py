"""pg-ml-kit helpers: small on purpose. The lessons live in sql/ and the notebooks."""
from .config import KIT_ROOT, SQL_DIR, database_url, kit_settings, replica_url, sqlalchemy_url
from . import exercises
from .db import connect, run_sql_block, run_sql_file, show_sql, sql_block, sql_engine

__all__ = ["exercises", "KIT_ROOT", "SQL_DIR", "database_url", "kit_settings", "replica_url", "sqlalchemy_url",
           "connect", "run_sql_block", "run_sql_file", "show_sql", "sql_block", "sql_engine"]
