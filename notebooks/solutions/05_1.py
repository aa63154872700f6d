# Exercise 05.1 — solution: ids and features aggregated in the same order, one call, unnested side by side
answer = """
WITH batch AS (
    SELECT array_agg(id ORDER BY id) AS ids,
           predict_purchase_batch(array_agg(age ORDER BY id),
                                  array_agg(income ORDER BY id),
                                  array_agg(credit_score ORDER BY id)) AS predictions
      FROM customer_data
     WHERE id BETWEEN 1 AND 10
)
SELECT p.id, p.predicted_purchase
  FROM batch, unnest(batch.ids, batch.predictions) AS p(id, predicted_purchase)
 ORDER BY p.id
"""
