# Exercise 02.2 — solution: the formula read from sample_data_truth(), one row of four numbers
answer = """
WITH t AS (SELECT max(value) FILTER (WHERE term = 'intercept')    AS intercept,
                  max(value) FILTER (WHERE term = 'age')          AS age,
                  max(value) FILTER (WHERE term = 'income')       AS income,
                  max(value) FILTER (WHERE term = 'credit_score') AS credit_score
             FROM sample_data_truth())
SELECT stddev_samp(c.purchase_amount - (t.intercept + t.age * c.age + t.income * c.income
                                        + t.credit_score * c.credit_score)) AS noise_stddev
  FROM customer_data AS c, t
 WHERE c.id > 3          -- the talk's three rows are not from the formula
"""
