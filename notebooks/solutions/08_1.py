# Rank the features (not the intercept) by the size of their contribution, largest first, and keep the first.
answer = """
SELECT feature
  FROM explain_purchase_prediction(62, 30000, 810)
 WHERE feature <> '(intercept)'
 ORDER BY abs(contribution) DESC
 LIMIT 1
"""
