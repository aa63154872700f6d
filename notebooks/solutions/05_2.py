# Exercise 05.2 — solution: the prediction is just another value in the WHERE clause
answer = """
SELECT count(*)
  FROM customer_data
 WHERE purchase_amount - predict_purchase_cached(age, income, credit_score) > 250
"""
