# Exercise 04.2 — solution: ->> gives text, so cast before sorting; rows without metrics are left out
answer = """
SELECT version
  FROM ml_model_versions
 WHERE model_name = 'purchase_predictor' AND metrics ? 'mae'
 ORDER BY (metrics->>'mae')::float8
 LIMIT 1
"""
