# The same document serialisation_demo_train writes for format 'json', from the model trained here.
document = {"model": "LinearRegression", "features": FEATURES,
            "intercept": float(client_model.intercept_),                        # plain floats: json cannot
            "coefficients": dict(zip(FEATURES, map(float, client_model.coef_)))}  # encode numpy.float64
with pgmlkit.connect() as conn:
    conn.execute("SELECT serialisation_demo_store('exercise_json', 'json', %s)", [json.dumps(document).encode()])
answer = "exercise_json"
