# Exercise 06.2 — solution: one UPDATE makes scoring mandatory; the rejected INSERT says whose fault it is
with pgmlkit.connect() as conn:
    conn.execute("UPDATE ml_prediction_settings SET on_failure = 'reject' WHERE table_name = 'transactions'")
    try:
        conn.execute("INSERT INTO transactions (customer_id, amount, merchant_category, hour_of_day,"
                     " distance_from_home_km) VALUES (4711, 250.00, 'casino', 23, 3)")
        answer = None                         # not reached: the trigger rejects the row
    except psycopg.Error as error:
        print(error.diag.message_primary)
        answer = error.sqlstate
