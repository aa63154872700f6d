"""The Docker recipe names the same stack as the native one and as kit.env.

No Docker engine runs in CI, so the images are never built there. These tests read docker/, kit.env,
requirements/, scripts/ and environment.yml instead, and fail when they disagree: another PostgreSQL
major, another Python minor (a model pickled on one side must load on the other), re-listed or
drifted pins, another port, another superuser step. Each check is a function of the repository root;
test_each_check_catches_its_mutation breaks a copy of the files in a known way and requires the
check to fail, so none of them can silently pass.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

# The Python that Debian's PL/Python links against, per release: the image's codename decides it.
DEBIAN_PYTHON = {"bullseye": "3.9", "bookworm": "3.11", "trixie": "3.13"}
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[(?P<extras>[^\]]*)\])?==(?P<version>[^\s;#]+)$")
PIP_OPTIONS_WITH_VALUE = {"-r", "--requirement", "-c", "--constraint", "--progress-bar", "-i", "--index-url",
                          "--extra-index-url", "-f", "--find-links", "-t", "--target", "--prefix", "--root"}
COMPOSE_DEFAULT = re.compile(r"\$\{(?P<name>[A-Z_][A-Z0-9_]*):-(?P<default>[^}]*)\}")


# --------------------------------------------------------------------------- readers

def kit_env(root: Path) -> dict[str, str]:
    env = {}
    for line in (root / "kit.env").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: continuation lines joined, comment lines dropped (as Docker does)."""
    out, buf = [], ""
    for raw in dockerfile.read_text().splitlines():
        if raw.strip().startswith("#") or (not raw.strip() and not buf):
            continue
        if raw.rstrip().endswith("\\"):
            buf += raw.rstrip()[:-1] + " "
            continue
        buf += raw
        cmd, _, rest = buf.strip().partition(" ")
        out.append((cmd.upper(), rest.strip()))
        buf = ""
    return out


def args_of(instrs, cmd: str) -> list[str]:
    return [rest for c, rest in instrs if c == cmd]


def arg_defaults(instrs) -> dict[str, str]:
    return dict(rest.split("=", 1) for rest in args_of(instrs, "ARG") if "=" in rest)


def env_values(instrs) -> dict[str, str]:
    values = {}
    for rest in args_of(instrs, "ENV"):
        for token in shlex.split(rest):
            key, _, value = token.partition("=")
            values[key] = value
    return values


def copies(instrs) -> list[tuple[list[str], str]]:
    """COPY instructions as (sources, destination)."""
    out = []
    for rest in args_of(instrs, "COPY"):
        tokens = [t for t in shlex.split(rest) if not t.startswith("--")]
        out.append((tokens[:-1], tokens[-1]))
    return out


def copy_destination(instrs, source: str, last: bool = False) -> str:
    """Where (the first, or the last) COPY puts `source` (a destination ending in / keeps the file name)."""
    for sources, dest in (reversed(copies(instrs)) if last else copies(instrs)):
        if source in sources:
            return dest + Path(source).name if dest.endswith("/") else dest
    raise AssertionError(f"the Dockerfile does not COPY {source}")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_pin(spec: str) -> tuple[str, frozenset, str]:
    match = PIN.match(spec.strip())
    assert match, f"{spec!r} is not an exact pin (name==version)"
    extras = frozenset(normalise(e) for e in (match["extras"] or "").split(",") if e.strip())
    return normalise(match["name"]), extras, match["version"]


def requirement_pins(path: Path) -> dict[str, tuple[frozenset, str]]:
    """name -> (extras, version) for a requirements file, following -r includes."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r"):
            pins.update(requirement_pins(path.parent / line[2:].strip()))
            continue
        name, extras, version = parse_pin(line)
        assert name not in pins, f"{name} is pinned twice ({path.name})"
        pins[name] = (extras, version)
    return pins


def pg_dockerfile(root):
    return instructions(root / "docker/postgres/Dockerfile")


def lab_dockerfile(root):
    return instructions(root / "docker/lab/Dockerfile")


def compose(root) -> dict:
    return yaml.safe_load((root / "docker/docker-compose.yml").read_text())


def pip_install_targets(instrs) -> list[str]:
    """Everything the Dockerfile's `pip install` commands name other than files after -r."""
    named = []
    for rest in args_of(instrs, "RUN"):
        for command in re.split(r";|&&", rest):
            if "pip install" not in command:
                continue
            tokens = shlex.split(command.split("pip install", 1)[1])
            skip = False
            for token in tokens:
                if skip:
                    skip = False
                elif token in PIP_OPTIONS_WITH_VALUE:
                    skip = True
                elif not token.startswith("-"):
                    named.append(token)
    return named


# --------------------------------------------------------------------------- checks

def check_postgres_base_image(root: Path) -> None:
    env, instrs = kit_env(root), pg_dockerfile(root)
    defaults = arg_defaults(instrs)
    assert defaults.get("POSTGRES_IMAGE") == env["POSTGRES_IMAGE"], \
        f"docker/postgres/Dockerfile builds FROM {defaults.get('POSTGRES_IMAGE')}, kit.env says {env['POSTGRES_IMAGE']}"
    assert args_of(instrs, "FROM") == ["${POSTGRES_IMAGE}"], "the db image must be FROM ${POSTGRES_IMAGE}"
    match = re.fullmatch(r"postgres:(\d+)(?:\.\d+)*-(\w+)", defaults["POSTGRES_IMAGE"])
    assert match, f"POSTGRES_IMAGE {defaults['POSTGRES_IMAGE']} is not a pinned postgres:<major>.<minor>-<debian> tag"
    major, codename = match.groups()
    assert major == env["PG_MAJOR"], f"the image runs PostgreSQL {major}, kit.env PG_MAJOR={env['PG_MAJOR']}"
    assert DEBIAN_PYTHON.get(codename) == env["PYTHON_MINOR"], \
        f"{codename}'s PL/Python embeds Python {DEBIAN_PYTHON.get(codename)}, kit.env PYTHON_MINOR={env['PYTHON_MINOR']}"
    # The build itself refuses a base image of another major or a PL/Python of another Python.
    assert defaults.get("KIT_PG_MAJOR") == env["PG_MAJOR"], f"ARG KIT_PG_MAJOR={defaults.get('KIT_PG_MAJOR')}"
    assert defaults.get("PYTHON_MINOR") == env["PYTHON_MINOR"], f"ARG PYTHON_MINOR={defaults.get('PYTHON_MINOR')}"
    runs = " ".join(args_of(instrs, "RUN"))
    assert 'test "${PG_MAJOR}" = "${KIT_PG_MAJOR}"' in runs, "the db build must refuse a base image of another major"
    assert 'grep -F "libpython${PYTHON_MINOR}"' in runs, "the db build must refuse a PL/Python linked to another Python"


def check_postgres_packages(root: Path) -> None:
    """plpython3 and pg_cron for PG_MAJOR, in the image as in scripts/native_db.sh."""
    env = kit_env(root)
    runs = " ".join(args_of(pg_dockerfile(root), "RUN"))
    native = (root / "scripts/native_db.sh").read_text()
    same_major = {"${PG_MAJOR}", "$PG_MAJOR", env["PG_MAJOR"]}   # PG_MAJOR: the base image's, = its tag
    for label, pattern in (("PL/Python", r"postgresql-plpython3-(\$\{?PG_MAJOR\}?|\d+)"),
                           ("pg_cron", r"postgresql-(\$\{?PG_MAJOR\}?|\d+)-cron")):
        found = re.findall(pattern, runs)
        assert found, f"docker/postgres/Dockerfile installs no {label} package"
        assert set(found) <= same_major, f"docker/postgres/Dockerfile installs {label} for major {found}, kit.env says {env['PG_MAJOR']}"
        assert re.search(pattern, native), f"scripts/native_db.sh installs no {label} package"


def check_server_packages_from_pin_file(root: Path) -> None:
    """The db image installs requirements/server.txt itself, into a venv of the server's Python on PYTHONPATH."""
    instrs = pg_dockerfile(root)
    dest = copy_destination(instrs, "requirements/server.txt")
    runs = " ".join(args_of(instrs, "RUN"))
    assert re.search(rf"pip install [^;&]*-r {re.escape(dest)}", runs), f"no `pip install -r {dest}` in the db image"
    relisted = [t for t in pip_install_targets(instrs) if t != "pip"]
    assert not relisted, f"docker/postgres/Dockerfile names packages itself ({relisted}); they belong in requirements/server.txt"
    venv = re.search(r'"/usr/bin/python\$\{PYTHON_MINOR\}" -m venv (\S+);', runs)
    assert venv, "the server venv must be built with /usr/bin/python${PYTHON_MINOR}, the Python PL/Python embeds"
    assert env_values(instrs).get("PYTHONPATH") == f"{venv[1]}/lib/python${{PYTHON_MINOR}}/site-packages", \
        "PYTHONPATH must be the server venv's site-packages"
    native = (root / "scripts/native_db.sh").read_text()
    assert '-r "$KIT_ROOT/requirements/server.txt"' in native, "the native path must install the same pin file"


def check_server_library(root: Path) -> None:
    """Both paths put src/pgmlkit_server on PL/Python's path with the pin file it goes with, as pins.txt."""
    instrs = pg_dockerfile(root)
    site = "/opt/pg-ml-kit/server-venv/lib/python${PYTHON_MINOR}/site-packages"
    assert copy_destination(instrs, "src/pgmlkit_server") == f"{site}/pgmlkit_server", \
        "docker/postgres/Dockerfile must copy src/pgmlkit_server into the server venv's site-packages"
    assert copy_destination(instrs, "requirements/server.txt", last=True) == f"{site}/pgmlkit_server/pins.txt", \
        "docker/postgres/Dockerfile must stamp pgmlkit_server with requirements/server.txt as pins.txt"
    native = (root / "scripts/native_db.sh").read_text()
    assert 'source="$KIT_ROOT/src/pgmlkit_server" target="$SITE_PACKAGES/pgmlkit_server"' in native, \
        "scripts/native_db.sh must install src/pgmlkit_server into the server venv"
    assert 'cp "$KIT_ROOT/requirements/server.txt" "$target/pins.txt"' in native, \
        "scripts/native_db.sh must stamp pgmlkit_server with requirements/server.txt"


def check_thread_settings(root: Path) -> None:
    """One BLAS/OpenMP thread per backend on both paths."""
    native = dict(re.findall(r"^(\w+_NUM_THREADS) = '(\d+)'", (root / "scripts/native_db.sh").read_text(), re.M))
    docker = {k: v for k, v in env_values(pg_dockerfile(root)).items() if k.endswith("_NUM_THREADS")}
    assert native, "scripts/native_db.sh sets no *_NUM_THREADS for the server"
    assert docker == native, f"thread settings differ: Docker {docker}, native {native}"


SETTING = re.compile(r"^\s*([a-z_.]+)\s*=\s*(.+?)\s*$", re.M)


def check_server_settings(root: Path) -> None:
    """The image's postgresql.conf + initdb.sh's settings == native_db.sh's kit_conf (port and listen aside)."""
    native_body = re.search(r"^kit_conf\(\) \{\n    cat <<CONF\n(.*?)^CONF$", (root / "scripts/native_db.sh").read_text(), re.M | re.S)
    assert native_body, "kit_conf() in scripts/native_db.sh has changed shape: update this check"
    native = dict(SETTING.findall(native_body[1]))
    for container_set in ("port", "listen_addresses"):
        native.pop(container_set, None)
    initdb = re.search(r'cat > "\$PGDATA/pg-ml-kit.conf" <<CONF\n(.*?)^CONF$', (root / "docker/postgres/initdb.sh").read_text(), re.M | re.S)
    assert initdb, "docker/postgres/initdb.sh no longer writes pg-ml-kit.conf"
    docker = dict(SETTING.findall(initdb[1]))
    image_conf = copy_destination(pg_dockerfile(root), "docker/postgres/postgresql.conf")
    assert docker.pop("include", None) == f"'{image_conf}'", f"pg-ml-kit.conf must include {image_conf}"
    docker.update(SETTING.findall((root / "docker/postgres/postgresql.conf").read_text()))
    assert docker == native, f"server settings differ: Docker {docker}, native {native}"


def check_same_superuser_step(root: Path) -> None:
    """docker's initdb runs scripts/bootstrap.sql with the same psql variables as native_db.sh."""
    instrs = pg_dockerfile(root)
    bootstrap = copy_destination(instrs, "scripts/bootstrap.sql")
    initdb = copy_destination(instrs, "docker/postgres/initdb.sh")
    assert initdb.startswith("/docker-entrypoint-initdb.d/") and initdb.endswith(".sh"), initdb
    script = (root / "docker/postgres/initdb.sh").read_text()
    native = (root / "scripts/native_db.sh").read_text()
    assert f"-f {bootstrap}" in script, f"docker/postgres/initdb.sh does not run {bootstrap} (= scripts/bootstrap.sql)"
    # native: on stdin, because the postgres user may not be able to read the clone
    assert '-f - < "$KIT_ROOT/scripts/bootstrap.sql"' in native
    sql = (root / "scripts/bootstrap.sql").read_text()
    for var in ("kit_user", "kit_password", "kit_db"):
        assert f":'{var}'" in sql or f":{var}" in sql, f"bootstrap.sql no longer uses {var}"
        assert re.search(rf"-v {var}=\"\$KIT_{var[4:].upper()}\"", script), f"initdb.sh does not pass {var}"
        assert re.search(rf"-v {var}=\"\$KIT_{var[4:].upper()}\"", native), f"native_db.sh does not pass {var}"
    env, image_env = kit_env(root), env_values(instrs)
    for key in ("KIT_USER", "KIT_PASSWORD", "KIT_DB"):
        assert image_env.get(key) == env[key], f"the db image's {key}={image_env.get(key)}, kit.env {env[key]}"


def check_lab_image(root: Path) -> None:
    env, instrs = kit_env(root), lab_dockerfile(root)
    defaults = arg_defaults(instrs)
    assert defaults.get("LAB_IMAGE") == env["LAB_IMAGE"], \
        f"docker/lab/Dockerfile builds FROM {defaults.get('LAB_IMAGE')}, kit.env says {env['LAB_IMAGE']}"
    assert args_of(instrs, "FROM") == ["${LAB_IMAGE}"]
    match = re.fullmatch(r"python:(\d+\.\d+)(?:\.\d+)?-(?:slim-)?(\w+)", defaults["LAB_IMAGE"])
    assert match, f"LAB_IMAGE {defaults['LAB_IMAGE']} is not a python:<minor>[-slim]-<debian> tag"
    minor, codename = match.groups()
    assert minor == env["PYTHON_MINOR"], f"the lab kernel runs Python {minor}, PL/Python {env['PYTHON_MINOR']}"
    assert codename in env["POSTGRES_IMAGE"], f"the lab image is on {codename}, the db image on {env['POSTGRES_IMAGE']}"
    assert defaults.get("PYTHON_MINOR") == env["PYTHON_MINOR"] and defaults.get("PG_MAJOR") == env["PG_MAJOR"]
    client = copy_destination(instrs, "requirements/client.txt")
    # client.txt says `-r server.txt`: both files must land side by side.
    assert copy_destination(instrs, "requirements/server.txt") == str(Path(client).parent / "server.txt"), \
        "requirements/server.txt must be copied next to client.txt (client.txt includes it)"
    runs = " ".join(args_of(instrs, "RUN"))
    assert re.search(rf"pip install [^;&]*-r {re.escape(client)}", runs), "the lab image must pip install -r client.txt"
    assert not pip_install_targets(instrs), "docker/lab/Dockerfile names packages itself; they belong in requirements/"
    assert "--name pg-ml-kit" in runs, "the lab image must register the kernel pg-ml-kit"
    assert "'PLOOMBER_STATS_ENABLED': 'false'" in runs, "the pg-ml-kit kernel must set PLOOMBER_STATS_ENABLED=false"
    image_env = env_values(instrs)
    assert image_env.get("DATABASE_URL") == f"postgresql://{env['KIT_USER']}:{env['KIT_PASSWORD']}@db:5432/{env['KIT_DB']}"
    assert "pg-ml-kit.pth', 'w').write('/kit/src" in runs, "the lab image must put /kit/src (the bind mount) on sys.path"


def check_compose(root: Path) -> None:
    env, spec = kit_env(root), compose(root)
    text = (root / "docker/docker-compose.yml").read_text()
    # Every ${NAME:-default} that names a kit.env key repeats kit.env's value.
    for match in COMPOSE_DEFAULT.finditer(text):
        if match["name"] in env:
            assert match["default"] == env[match["name"]], \
                f"docker-compose.yml defaults {match['name']} to {match['default']}, kit.env says {env[match['name']]}"
    services = spec["services"]
    assert set(services) == {"db", "lab"}, set(services)
    db, lab = services["db"], services["lab"]
    for service, dockerfile, instrs in (("db", "docker/postgres/Dockerfile", pg_dockerfile(root)),
                                        ("lab", "docker/lab/Dockerfile", lab_dockerfile(root))):
        build = services[service]["build"]
        assert build["context"] == ".." and build["dockerfile"] == dockerfile, build
        # A build arg the Dockerfile does not declare is silently ignored by Docker.
        undeclared = set(build.get("args", {})) - {a.split("=")[0] for a in args_of(instrs, "ARG")}
        assert not undeclared, f"{service}: build args {undeclared} are not ARGs of {dockerfile}"
    ports = [re.fullmatch(r"(?:127\.0\.0\.1:)?\$\{KIT_PORT:-(\d+)\}:5432", p) for p in db["ports"]]
    assert any(ports), f"db must publish 5432 on ${{KIT_PORT:-{env['KIT_PORT']}}}, has {db['ports']}"
    assert [m[1] for m in ports if m] == [env["KIT_PORT"]]
    lab_ports = [re.fullmatch(r"(?:127\.0\.0\.1:)?\$\{KIT_LAB_PORT:-(\d+)\}:8888", p) for p in lab["ports"]]
    assert [m[1] for m in lab_ports if m] == [env["KIT_LAB_PORT"]], lab["ports"]
    # The health check is the image's docker/postgres/healthcheck.sh: pg_isready + the PL/Python import.
    health = db["healthcheck"]["test"]
    assert health[0] == "CMD" and health[1:] == [copy_destination(pg_dockerfile(root), "docker/postgres/healthcheck.sh")], \
        f"db's health check {health} is not the image's copy of docker/postgres/healthcheck.sh"
    script = (root / "docker/postgres/healthcheck.sh").read_text()
    for needed in ("pg_isready -q -h 127.0.0.1", "LANGUAGE plpython3u", "import sklearn, numpy, pandas"):
        assert needed in script, f"docker/postgres/healthcheck.sh no longer checks {needed!r}"
    volumes = [v.split(":") for v in db["volumes"]]
    assert any(src in spec.get("volumes", {}) and dst == "/var/lib/postgresql/data" for src, dst in volumes), db["volumes"]
    assert lab["depends_on"]["db"]["condition"] == "service_healthy", "lab must wait for a healthy db"
    assert "..:/kit" in lab["volumes"], "the repository must be bind-mounted at /kit"
    assert lab["environment"]["DATABASE_URL"].endswith("@db:5432/${KIT_DB:-" + env["KIT_DB"] + "}")
    # scripts/db.sh hands the docker backend to scripts/docker_db.sh, which drives this file.
    docker_db = (root / "scripts/docker_db.sh").read_text()
    assert '"$KIT_ROOT/docker/docker-compose.yml"' in docker_db and '"$KIT_ROOT/scripts/docker_db.sh"' in (root / "scripts/db.sh").read_text()


def check_environment_yml(root: Path) -> None:
    """environment.yml pins == requirements/client.txt ∪ requirements/server.txt, names normalised."""
    env, spec = kit_env(root), yaml.safe_load((root / "environment.yml").read_text())
    deps = spec["dependencies"]
    assert f"python={env['PYTHON_MINOR']}" in deps, f"environment.yml must pin python={env['PYTHON_MINOR']}"
    pip_lists = [d["pip"] for d in deps if isinstance(d, dict) and "pip" in d]
    assert len(pip_lists) == 1, "environment.yml needs one pip: section"
    conda_pins = {}
    for spec_line in pip_lists[0]:
        assert not spec_line.startswith("-"), f"{spec_line!r}: list the pins, so conda users see them"
        name, extras, version = parse_pin(spec_line)
        assert name not in conda_pins, f"{name} listed twice in environment.yml"
        conda_pins[name] = (extras, version)
    pip_pins = requirement_pins(root / "requirements/client.txt")
    assert requirement_pins(root / "requirements/server.txt").items() <= pip_pins.items(), \
        "requirements/client.txt must include requirements/server.txt"
    missing = sorted(set(pip_pins) - set(conda_pins))
    extra = sorted(set(conda_pins) - set(pip_pins))
    differ = sorted(n for n in set(pip_pins) & set(conda_pins) if pip_pins[n] != conda_pins[n])
    assert not (missing or extra or differ), \
        f"environment.yml vs requirements/: missing {missing}, not in requirements {extra}, different {differ}"


def check_build_context_filters(root: Path) -> None:
    """Each Dockerfile.dockerignore (ignore all, re-include) lets through every file its Dockerfile COPYs."""
    for name in ("postgres", "lab"):
        dockerfile = root / f"docker/{name}/Dockerfile"
        lines = [l.strip() for l in (root / f"docker/{name}/Dockerfile.dockerignore").read_text().splitlines()
                 if l.strip() and not l.startswith("#")]
        assert lines[0] == "*", f"docker/{name}/Dockerfile.dockerignore should start with * (send only what is copied)"
        allowed = {l[1:].rstrip("/") for l in lines[1:] if l.startswith("!")}
        for sources, _ in copies(instructions(dockerfile)):
            for source in sources:
                assert (root / source).exists(), f"{dockerfile.relative_to(root)} copies {source}, which does not exist"
                assert any(source == a or source.startswith(a + "/") for a in allowed), \
                    f"{source} is filtered out of the build context by docker/{name}/Dockerfile.dockerignore"


CHECKS = [check_postgres_base_image, check_postgres_packages, check_server_packages_from_pin_file, check_server_library,
          check_thread_settings, check_server_settings, check_same_superuser_step, check_lab_image, check_compose,
          check_environment_yml, check_build_context_filters]


# --------------------------------------------------------------------------- tests

@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__[len("check_"):])
def test_stack_is_consistent(check):
    check(ROOT)


# (check, file, text in the real file, replacement): a realistic drift each check must catch.
MUTATIONS = [
    (check_server_library, "docker/postgres/Dockerfile", "site-packages/pgmlkit_server/pins.txt", "site-packages/pgmlkit_server/PINS"),
    (check_server_library, "scripts/native_db.sh", '"$target/pins.txt"', '"$target/other.txt"'),
    (check_postgres_base_image, "docker/postgres/Dockerfile", "postgres:15.18-bookworm", "postgres:16.4-bookworm"),
    (check_postgres_base_image, "kit.env", "PG_MAJOR=15", "PG_MAJOR=16"),
    (check_postgres_base_image, "kit.env", "PYTHON_MINOR=3.11", "PYTHON_MINOR=3.12"),
    (check_postgres_base_image, "docker/postgres/Dockerfile", 'test "${PG_MAJOR}" = "${KIT_PG_MAJOR}"; ', ""),
    (check_postgres_packages, "docker/postgres/Dockerfile", '"postgresql-plpython3-${PG_MAJOR}${pin}"', '"postgresql-plpython3-14"'),
    (check_postgres_packages, "docker/postgres/Dockerfile", '"postgresql-${PG_MAJOR}-cron"', '"postgresql-16-cron"'),
    (check_server_packages_from_pin_file, "docker/postgres/Dockerfile",
     "-r /opt/pg-ml-kit/requirements/server.txt", "-r /opt/pg-ml-kit/requirements/server.txt scikit-learn==1.9.1"),
    (check_server_packages_from_pin_file, "docker/postgres/Dockerfile",
     "-r /opt/pg-ml-kit/requirements/server.txt", "scikit-learn numpy pandas"),
    (check_server_packages_from_pin_file, "docker/postgres/Dockerfile",
     "server-venv/lib/python${PYTHON_MINOR}/site-packages", "server-venv/lib/python3.12/site-packages"),
    (check_server_packages_from_pin_file, "docker/postgres/Dockerfile",
     '"/usr/bin/python${PYTHON_MINOR}" -m venv', "python3 -m venv"),
    (check_thread_settings, "docker/postgres/Dockerfile", "OMP_NUM_THREADS=1", "OMP_NUM_THREADS=2"),
    (check_server_settings, "docker/postgres/postgresql.conf", "max_worker_processes = 16", "max_worker_processes = 8"),
    (check_server_settings, "docker/postgres/postgresql.conf", "cron.use_background_workers = on\n", ""),
    (check_server_settings, "docker/postgres/initdb.sh", "cron.database_name = '$KIT_DB'", "cron.database_name = 'postgres'"),
    (check_server_settings, "scripts/native_db.sh", "max_connections = 100", "max_connections = 200"),
    (check_server_settings, "docker/postgres/Dockerfile", "/etc/pg-ml-kit/postgresql.conf", "/etc/pg-ml-kit/kit.conf"),
    (check_same_superuser_step, "docker/postgres/initdb.sh", "-f /opt/pg-ml-kit/bootstrap.sql", "-f /opt/pg-ml-kit/other.sql"),
    (check_same_superuser_step, "docker/postgres/initdb.sh", '-v kit_db="$KIT_DB"', ""),
    (check_same_superuser_step, "docker/postgres/Dockerfile", "KIT_DB=mlkit", "KIT_DB=workshop"),
    (check_lab_image, "docker/lab/Dockerfile", "python:3.11-slim-bookworm", "python:3.12-slim-bookworm"),
    (check_lab_image, "kit.env", "LAB_IMAGE=python:3.11-slim-bookworm", "LAB_IMAGE=python:3.11-slim-trixie"),
    (check_lab_image, "docker/lab/Dockerfile", "COPY requirements/server.txt requirements/client.txt", "COPY requirements/client.txt"),
    (check_lab_image, "docker/lab/Dockerfile", "PLOOMBER_STATS_ENABLED': 'false'", "PLOOMBER_STATS_ENABLED': 'true'"),
    (check_compose, "docker/docker-compose.yml", "${KIT_PORT:-5499}", "${KIT_PORT:-5432}"),
    (check_compose, "docker/docker-compose.yml", '"127.0.0.1:${KIT_PORT:-5499}:5432"', '"127.0.0.1:5499:5432"'),
    (check_compose, "docker/docker-compose.yml", "${KIT_LAB_PORT:-8899}:8888", "8888:8888"),
    (check_compose, "docker/docker-compose.yml", "PYTHON_MINOR: ${PYTHON_MINOR:-3.11}\n        PG_MAJOR",
     "PYTHON_MINR: ${PYTHON_MINOR:-3.11}\n        PG_MAJOR"),
    (check_compose, "docker/postgres/healthcheck.sh", "LANGUAGE plpython3u", "LANGUAGE plpgsql"),
    (check_compose, "docker/postgres/healthcheck.sh", "pg_isready -q -h 127.0.0.1", "pg_isready -q"),
    (check_compose, "docker/docker-compose.yml", "/usr/local/bin/pg-ml-kit-healthcheck", "pg_isready"),
    (check_compose, "docker/docker-compose.yml", "condition: service_healthy", "condition: service_started"),
    (check_compose, "docker/docker-compose.yml", "- ..:/kit", "- ../notebooks:/kit/notebooks"),
    (check_environment_yml, "environment.yml", "numpy==2.4.6", "numpy==2.4.5"),
    (check_environment_yml, "environment.yml", "psycopg[binary]==3.3.9", "psycopg==3.3.9"),
    (check_environment_yml, "environment.yml", "      - nbval==0.11.0\n", ""),
    (check_environment_yml, "environment.yml", "python=3.11", "python=3.12"),
    (check_environment_yml, "requirements/server.txt", "scipy==1.17.1", "scipy==1.17.2"),
    (check_build_context_filters, "docker/postgres/Dockerfile.dockerignore", "!scripts/bootstrap.sql\n", ""),
]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A copy of the files the checks read."""
    copy = tmp_path_factory.mktemp("stack")
    for name in ("kit.env", "environment.yml"):
        shutil.copy(ROOT / name, copy / name)
    for folder in ("requirements", "scripts", "docker", "src/pgmlkit_server"):
        shutil.copytree(ROOT / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for check in CHECKS:
        check(copy)   # the copy is as consistent as the repository
    return copy


@pytest.mark.parametrize("check, path, old, new", MUTATIONS,
                         ids=[f"{c.__name__[6:]}-{i}" for i, (c, *_rest) in enumerate(MUTATIONS)])
def test_each_check_catches_its_mutation(pristine, tmp_path, check, path, old, new):
    root = tmp_path / "stack"
    shutil.copytree(pristine, root)
    target = root / path
    text = target.read_text()
    assert old in text, f"{path} no longer contains {old!r}: update this mutation"
    target.write_text(text.replace(old, new))
    with pytest.raises(AssertionError):
        check(root)


def compose_v2() -> list[str] | None:
    """`docker compose` (plugin) or a standalone `docker-compose`, if either is Compose v2."""
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]):
            result = subprocess.run([*command, "version"], capture_output=True, text=True)
            if result.returncode == 0 and re.search(r"\bv?2\.\d+", result.stdout):
                return command
    return None


def test_compose_file_is_valid_for_compose():
    """`docker compose config` validates the file against the Compose schema; it needs no engine."""
    command = compose_v2()
    if command is None:
        pytest.skip("no Compose v2 (`docker compose` or `docker-compose`) on PATH; YAML and structure are checked above")
    env = kit_env(ROOT)
    clean = {k: v for k, v in os.environ.items() if k not in env}   # kit.env's values, not the shell's
    result = subprocess.run([*command, "--env-file", str(ROOT / "kit.env"), "--file", str(ROOT / "docker/docker-compose.yml"),
                             "config", "--format", "json"], capture_output=True, text=True, timeout=60, env=clean)
    assert result.returncode == 0, result.stderr
    rendered = json.loads(result.stdout)
    assert {p["target"]: p["published"] for p in rendered["services"]["db"]["ports"]} == {5432: env["KIT_PORT"]}
    assert {p["target"]: p["published"] for p in rendered["services"]["lab"]["ports"]} == {8888: env["KIT_LAB_PORT"]}
    assert rendered["services"]["db"]["build"]["args"]["POSTGRES_IMAGE"] == env["POSTGRES_IMAGE"]
    assert rendered["services"]["lab"]["depends_on"]["db"]["condition"] == "service_healthy"
