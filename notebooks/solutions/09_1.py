# Rows kept without a prediction, whose reason the trigger logged (EXISTS: one row per id even if logged twice).
answer = """
SELECT c.id
  FROM customer_data c
 WHERE c.predicted_purchase IS NULL
   AND EXISTS (SELECT FROM ml_prediction_errors e WHERE e.table_name = 'customer_data' AND e.row_id = c.id)
"""
