"""Checks for notebook 02 (sample data)."""
from numbers import Real

from . import exercise
from ._sql import single_value

RESIDUAL_SD = """
    WITH t AS (SELECT max(value) FILTER (WHERE term = 'intercept')    AS intercept,
                      max(value) FILTER (WHERE term = 'age')          AS age,
                      max(value) FILTER (WHERE term = 'income')       AS income,
                      max(value) FILTER (WHERE term = 'credit_score') AS credit_score
                 FROM sample_data_truth())
    SELECT stddev_samp(c.purchase_amount - (t.intercept + t.age * c.age + t.income * c.income
                                            + t.credit_score * c.credit_score))::float8
      FROM customer_data c, t
     WHERE c.id > 3
"""


def _truth() -> dict[str, float]:
    import pgmlkit

    with pgmlkit.connect() as conn:
        return dict(conn.execute("SELECT term, value FROM sample_data_truth()").fetchall())


@exercise("02.1")
def expected_purchase(answer):
    t = _truth()
    expected = t["intercept"] + t["age"] * 40 + t["income"] * 70000 + t["credit_score"] * 720
    if not isinstance(answer, Real):
        return False, f"the answer should be a number, got {type(answer).__name__}."
    if abs(float(answer) - expected) < 0.01:
        return True, (f"{expected:.0f} = {t['intercept']:.0f} + {t['age']:g}·40 + {t['income']:g}·70000 "
                      f"+ {t['credit_score']:g}·720. A real customer like that spends this plus noise "
                      f"(standard deviation {t['noise_stddev']:g}).")
    return False, (f"{answer} is not what the formula gives. Read the terms with "
                   "SELECT * FROM sample_data_truth() and add intercept + Σ coefficient·feature (no noise).")


@exercise("02.2")
def noise_stddev(answer):
    import pgmlkit

    value = single_value(answer)
    with pgmlkit.connect() as conn:
        expected = conn.execute(RESIDUAL_SD).fetchone()[0]
    if value is None:
        return False, "your query returned NULL — is customer_data loaded (SELECT load_sample_customers();)?"
    value = float(value)
    if abs(value - expected) < 0.01:
        return True, (f"the noise's standard deviation is {value:.2f}; the generator asked for "
                      f"{_truth()['noise_stddev']:g}. The formula really is in the data.")
    if abs(value - expected) < 1:
        return False, (f"{value:.3f} is close to {expected:.3f} but not equal: leave out the talk's three "
                       "rows (id <= 3), which the formula did not produce.")
    return False, (f"your query returned {value:.3f}. Subtract the formula's value from purchase_amount "
                   "for every generated row, then take stddev_samp() of the differences.")
