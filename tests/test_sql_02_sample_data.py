"""sql/02_sample_data.sql: the talk's customer_data, sample_data_truth() and load_sample_customers()."""
from __future__ import annotations

import psycopg
import pytest

import pgmlkit
from pgmlkit import exercises

TALK_ROWS = [(1, 35, 50000, 700, 1000), (2, 28, 35000, 650, 500), (3, 45, 80000, 750, 2000)]
CHECKSUM = """
    SELECT md5(string_agg(concat_ws(',', id, age, income, credit_score, purchase_amount), ';' ORDER BY id))
      FROM (SELECT * FROM customer_data ORDER BY id LIMIT %s) AS first_rows
"""


@pytest.fixture()
def fresh(conn):
    """customer_data as notebook 02 starts it: gone, then the file applied (the talk's three rows)."""
    conn.execute("DROP TABLE IF EXISTS customer_data CASCADE")
    pgmlkit.run_sql_file("02_sample_data.sql", conn)
    return conn


def load(conn, n_rows, seed=42):
    return conn.execute("SELECT load_sample_customers(%s, %s)", [n_rows, seed]).fetchone()[0]


def checksum(conn, first_rows=10**9):
    return conn.execute(CHECKSUM, [first_rows]).fetchone()[0]


def truth(conn) -> dict[str, float]:
    return dict(conn.execute("SELECT term, value FROM sample_data_truth()").fetchall())


def test_applying_the_file_twice_keeps_the_talks_three_rows(fresh):
    pgmlkit.run_sql_file("02_sample_data.sql", fresh)
    rows = fresh.execute("SELECT id, age, income, credit_score, purchase_amount FROM customer_data ORDER BY id").fetchall()
    assert rows == TALK_ROWS


def test_customer_data_has_the_talks_columns_and_types(fresh):
    columns = fresh.execute(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_name = 'customer_data' AND table_schema = current_schema() ORDER BY ordinal_position").fetchall()
    assert columns == [("id", "integer"), ("age", "integer"), ("income", "numeric"),
                       ("credit_score", "integer"), ("purchase_amount", "numeric")]


def test_sample_data_truth_is_the_documented_formula(conn, apply_sql):
    apply_sql("02_sample_data.sql")
    assert truth(conn) == {"intercept": -1200.0, "age": 12.0, "income": 0.015, "credit_score": 2.0,
                           "noise_stddev": 80.0}


def test_load_returns_and_inserts_n_plus_the_talks_rows(fresh):
    assert load(fresh, 1000) == 1003
    assert fresh.execute("SELECT count(*), min(id), max(id) FROM customer_data").fetchone() == (1003, 1, 1003)
    first = fresh.execute("SELECT id, age, income, credit_score, purchase_amount FROM customer_data"
                          " WHERE id <= 3 ORDER BY id").fetchall()
    assert first == TALK_ROWS


def test_load_replaces_the_contents_instead_of_appending(fresh):
    load(fresh, 500)
    load(fresh, 200)
    assert fresh.execute("SELECT count(*), max(id) FROM customer_data").fetchone() == (203, 203)


def test_zero_rows_leaves_only_the_talks_rows(fresh):
    assert load(fresh, 0) == 3
    assert fresh.execute("SELECT count(*) FROM customer_data").fetchone()[0] == 3


def test_same_seed_same_rows_other_seed_other_rows(fresh):
    load(fresh, 2000, 42)
    first = checksum(fresh)
    load(fresh, 2000, 42)
    assert checksum(fresh) == first
    load(fresh, 2000, 7)
    assert checksum(fresh) != first


def test_a_larger_n_rows_extends_the_same_sequence(fresh):
    load(fresh, 500, 42)
    small = checksum(fresh)
    load(fresh, 5000, 42)
    assert checksum(fresh, 503) == small
    assert checksum(fresh) != small


@pytest.mark.parametrize("n_rows, shown", [(-1, "-1"), (None, "NULL")])
def test_bad_n_rows_is_refused_with_a_hint(fresh, n_rows, shown):
    with pytest.raises(psycopg.errors.RaiseException) as raised:
        load(fresh, n_rows)
    assert raised.value.diag.message_primary == f"load_sample_customers: n_rows must be 0 or more, got {shown}"
    assert "load_sample_customers(100000, 42)" in raised.value.diag.message_hint
    assert fresh.execute("SELECT count(*) FROM customer_data").fetchone()[0] == 3   # untouched


def test_null_seed_is_refused(fresh):
    with pytest.raises(psycopg.errors.RaiseException, match="seed must not be NULL"):
        load(fresh, 10, None)


def test_wrong_argument_type_is_a_sql_error(fresh):
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        fresh.execute("SELECT load_sample_customers('many')")


def test_generated_rows_follow_the_formula_plus_noise(fresh):
    load(fresh, 20000)
    t = truth(fresh)
    mean, sd = fresh.execute(
        "SELECT avg(r), stddev_samp(r) FROM (SELECT (purchase_amount - (%s + %s * age + %s * income + %s * credit_score))::float8 AS r"
        " FROM customer_data WHERE id > 3) AS residuals",
        [t["intercept"], t["age"], t["income"], t["credit_score"]]).fetchone()
    assert abs(mean) < 3                     # 80 / sqrt(20000) ≈ 0.6 is one standard error
    assert abs(sd - t["noise_stddev"]) < 2


def test_generated_features_stay_in_their_ranges(fresh):
    load(fresh, 20000)
    age, income, score = fresh.execute(
        "SELECT array[min(age), max(age)], array[min(income), max(income)], array[min(credit_score), max(credit_score)]"
        " FROM customer_data WHERE id > 3").fetchone()
    assert age == [18, 75]
    assert 15000 <= income[0] < 16000 and 130000 < income[1] <= 135000
    assert 300 <= score[0] and score[1] <= 850


def verdict(capsys, exercise_id, answer) -> str:
    exercises.check(exercise_id, answer)
    return capsys.readouterr().out


def test_exercise_checks_reject_wrong_answers_and_accept_right_ones(fresh, capsys):
    load(fresh, 5000)
    assert verdict(capsys, "02.1", 1770.0).startswith("✅ Correct")
    assert verdict(capsys, "02.1", 1370).startswith("❌ Not yet")
    assert verdict(capsys, "02.1", "1770").startswith("❌ Not yet")
    good = ("SELECT stddev_samp(purchase_amount - (-1200 + 12 * age + 0.015 * income + 2 * credit_score))"
            " FROM customer_data WHERE id > 3")
    assert verdict(capsys, "02.2", good).startswith("✅ Correct")
    assert "talk's three" in verdict(capsys, "02.2", good.replace("WHERE id > 3", ""))
    assert verdict(capsys, "02.2", "SELECT stddev_samp(purchase_amount) FROM customer_data").startswith("❌ Not yet")
