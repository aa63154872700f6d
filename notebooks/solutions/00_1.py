answer = "SELECT kit_server_environment() -> 'packages' ->> 'numpy'"
