import psycopg

a = pgmlkit.connect(autocommit=False)
a.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
b = pgmlkit.connect()                                           # autocommit: each statement commits

before = a.execute("SELECT ml_load_model('purchase_predictor')").fetchone()[0]   # A's snapshot starts here
other = b.execute("SELECT version FROM ml_model_history WHERE model_name = 'purchase_predictor'"
                  " AND NOT deployed AND mae IS NOT NULL ORDER BY version DESC LIMIT 1").fetchone()[0]
b.execute("SELECT ml_promote('purchase_predictor', %s)", [other])               # committed at once
inside = a.execute("SELECT ml_load_model('purchase_predictor')").fetchone()[0]   # still the old snapshot
a.commit()
after = a.execute("SELECT ml_load_model('purchase_predictor')").fetchone()[0]    # a new transaction, a new snapshot
a.close()
b.close()
print(f"A before: {before}, inside after B's commit: {inside}, after A's commit: {after}")
answer = (inside, after)
