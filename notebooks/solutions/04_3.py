# Exercise 04.3 — solution: intercept + Σ coefficient · feature, read from the deployed version's parameters
answer = """
SELECT (v.parameters->>'intercept')::float8
       + (v.parameters->'coefficients'->>'age')::float8          * 40
       + (v.parameters->'coefficients'->>'income')::float8       * 70000
       + (v.parameters->'coefficients'->>'credit_score')::float8 * 720 AS prediction
  FROM ml_models m
  JOIN ml_model_versions v USING (model_name, version)
 WHERE m.model_name = 'purchase_predictor'
"""
