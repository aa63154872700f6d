# The newest deployment of a version other than the one in use: the current version was deployed last,
# so the row before it (skipping repeats of the current version) is where a rollback goes.
answer = """
SELECT d.version
  FROM ml_model_deployments d
  JOIN ml_models m USING (model_name)
 WHERE d.model_name = 'purchase_predictor' AND d.version <> m.version
 ORDER BY d.deployment_id DESC
 LIMIT 1
"""
