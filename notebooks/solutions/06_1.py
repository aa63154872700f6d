# Exercise 06.1 — solution: only customers with a logged error failed; DISTINCT ON keeps one row (the latest) each
answer = """
SELECT DISTINCT ON (c.id) c.id, e.error
  FROM customer_data c
  JOIN ml_prediction_errors e ON e.table_name = 'customer_data' AND e.row_id = c.id
 WHERE c.predicted_purchase IS NULL
 ORDER BY c.id, e.error_id DESC
"""
