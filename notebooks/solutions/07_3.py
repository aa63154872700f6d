# Same job name: cron.schedule replaces the job's schedule (and command) instead of adding a second job.
with pgmlkit.connect() as conn:
    answer = conn.execute("SELECT cron.schedule('retrain-purchase-predictor', '0 3 * * *',"
                          " 'SELECT retrain_if_drifted(1.5, window_rows => 20000)')").fetchone()[0]
print("job id", answer)
