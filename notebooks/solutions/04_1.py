# Exercise 04.1 — solution: a candidate is registered and measured, but promote => false leaves it undeployed
with pgmlkit.connect() as conn:
    answer = conn.execute(
        "SELECT train_purchase_model('purchase_predictor', 'gradient_boosting', promote => false)").fetchone()[0]
print("registered version", answer)
