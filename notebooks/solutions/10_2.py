primary.execute("SELECT train_purchase_model('purchase_rf', 'random_forest', true, "
                """'{"n_estimators": 10, "max_depth": 6}', 0.2, 3)""")
answer = "SELECT function_name FROM ml_compiled_status() WHERE NOT is_current"
