"""Checks for notebook 07 (retraining)."""
from numbers import Integral

from . import exercise
from ._sql import single_value

MODEL = "purchase_predictor"
JOB = "retrain-purchase-predictor"


def _is_version(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


@exercise("07.1")
def rollback_target(answer):
    import psycopg

    import pgmlkit

    if not isinstance(answer, str):
        return False, f"the answer should be a SQL query as a Python string, got {type(answer).__name__}."
    if "ml_rollback" in answer.lower() or "ml_promote" in answer.lower():
        return False, "don't call ml_rollback or ml_promote: they would change the deployment. Read ml_model_deployments instead."
    value = single_value(answer)
    # The truth: what ml_rollback does, inside a transaction that is rolled back.
    with pgmlkit.connect() as conn:
        try:
            with conn.transaction(force_rollback=True):
                expected = conn.execute("SELECT ml_rollback(%s)", [MODEL]).fetchone()[0]
        except psycopg.Error as error:
            return False, f"right now ml_rollback would fail ({error.diag.message_primary}); run the lesson first."
    if value == expected:
        return True, (f"ml_rollback would deploy version {expected}: the newest deployment of a version other than "
                      "the one in use (a rollback, like `cd -`, toggles between the last two).")
    return False, (f"your query returned {value!r}, but ml_rollback would deploy version {expected}. Look for the newest "
                   "row of ml_model_deployments whose version is not the one deployed now.")


@exercise("07.2")
def repeatable_read(answer):
    import pgmlkit

    if not (isinstance(answer, tuple) and len(answer) == 2 and all(_is_version(v) for v in answer)):
        return False, f"the answer should be a tuple of two version numbers, got {answer!r}."
    with pgmlkit.connect() as conn:
        deployed = conn.execute("SELECT version FROM ml_models WHERE model_name = %s", [MODEL]).fetchone()
        last_two = [r[0] for r in conn.execute(
            "SELECT version FROM ml_model_deployments WHERE model_name = %s ORDER BY deployment_id DESC LIMIT 2",
            [MODEL])]
    if not deployed or len(last_two) < 2:
        return False, "promote another version from session B first (ml_model_history lists them)."
    before, after = last_two[1], last_two[0]
    if answer[0] == answer[1]:
        return False, ("both numbers are equal: did B promote the version that was already deployed (nothing changes), "
                       "or did A commit before asking the second time?")
    if answer == (before, after) and after == deployed[0]:
        return True, (f"inside its REPEATABLE READ transaction A kept version {before} even after B committed version "
                      f"{after}: the whole transaction reads one snapshot. After A's commit it uses {after}.")
    if answer == (after, before):
        return False, "the two numbers are swapped: the first is what A saw *before* its commit."
    return False, (f"the last deployment switched from version {before} to {after}; your tuple {answer} does not match "
                   "what A should see before and after its commit.")


@exercise("07.3")
def nightly_schedule(answer):
    import pgmlkit

    if not _is_version(answer):
        return False, f"the answer should be the job id (an integer) that cron.schedule returned, got {answer!r}."
    with pgmlkit.connect() as conn:
        if not conn.execute("SELECT to_regclass('cron.job') IS NOT NULL").fetchone()[0]:
            return False, "pg_cron is not installed in this database: run section 6 first."
        jobs = conn.execute("SELECT jobid, schedule, command FROM cron.job WHERE jobname = %s", [JOB]).fetchall()
        if len(jobs) != 1:
            return False, f"there are {len(jobs)} jobs named {JOB!r}; schedule exactly one, by that name."
        jobid, schedule, command = jobs[0]
        problems = []
        if jobid != answer:
            problems.append(f"the job named {JOB!r} has id {jobid}, not {answer}")
        if schedule.split() != ["0", "3", "*", "*", "*"]:
            problems.append(f"its schedule is {schedule!r}; every night at 03:00 is '0 3 * * *'")
        if "retrain_if_drifted" not in command:
            problems.append(f"its command {command!r} does not call retrain_if_drifted")
        if problems:
            return False, "; ".join(problems) + "."
        conn.execute("SELECT cron.unschedule(%s::bigint)", [jobid])
    return True, (f"job {jobid} now runs '0 3 * * *' (minute 0, hour 3, every day) — same name, so it replaced the "
                  "five-minute schedule. The check unscheduled it again.")
