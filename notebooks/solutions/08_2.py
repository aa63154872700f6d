# One row: the version in use (in_use), four answers read straight from the registry.
answer = """
SELECT trained_by,
       training_rows,
       library_versions->>'scikit-learn' AS scikit_learn,
       (metrics->>'r2')::float8          AS holdout_r2
  FROM ml_model_audit
 WHERE model_name = 'purchase_predictor' AND in_use
"""
