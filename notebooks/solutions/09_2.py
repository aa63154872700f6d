# ml.input_warnings compares each value with the training range the registry stored for the deployed version.
answer = "SELECT feature FROM ml.input_warnings('purchase_predictor', ARRAY[15, 200000, 700])"
