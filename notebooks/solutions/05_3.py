# Exercise 05.3 — solution: train, predict once, then ask the session's cache — all on one connection
with pgmlkit.connect() as conn:
    conn.execute("SELECT train_purchase_model('purchase_tree', 'decision_tree')")
    conn.execute("SELECT ml_predict('purchase_tree', ARRAY[30, 60000, 720])")
    answer = conn.execute("SELECT path FROM ml_predict_cache() WHERE model_name = 'purchase_tree'").fetchone()[0]
