# The deployed version's coefficients, read from its registry row, combined in plain SQL arithmetic.
answer = """
SELECT (v.parameters->>'intercept')::float8
     + (v.parameters->'coefficients'->>'age')::float8          * 35
     + (v.parameters->'coefficients'->>'income')::float8       * 50000
     + (v.parameters->'coefficients'->>'credit_score')::float8 * 700 AS prediction
  FROM ml_models m
  JOIN ml_model_versions v ON v.model_name = m.model_name AND v.version = m.version
 WHERE m.model_name = 'purchase_predictor'
"""
