answer = "SHOW port"
