-- 00 — setup check: ask the server which Python and which packages PL/Python imports.
-- Apply with: psql "$DATABASE_URL" -f sql/00_setup_check.sql
-- Then:       SELECT jsonb_pretty(kit_server_environment());

-- plpython3u is untrusted, so a superuser creates it (provisioning already did; this is a no-op then).
CREATE EXTENSION IF NOT EXISTS plpython3u;

-- @block kit_server_environment
CREATE OR REPLACE FUNCTION kit_server_environment()
RETURNS jsonb
LANGUAGE plpython3u
AS $$
import json, sys
from importlib import metadata

packages = {}
for name in ("scikit-learn", "numpy", "pandas", "scipy", "joblib", "skops"):
    try:
        packages[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
        packages[name] = None          # reported as missing by the check, not an error here

server_version = plpy.execute("SHOW server_version")[0]["server_version"]
return json.dumps({
    "postgresql": server_version,
    "python": "%d.%d.%d" % sys.version_info[:3],
    "python_executable": sys.executable,
    "sys_path": sys.path,
    "packages": packages,
})
$$;
