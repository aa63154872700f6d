primary.execute("""SELECT train_purchase_model('purchase_tree', 'decision_tree', true, '{"max_depth": 4}')""")
primary.execute("SELECT ml_deploy_compiled('purchase_tree', 'purchase_tree_sql')")
answer = "purchase_tree_sql"
