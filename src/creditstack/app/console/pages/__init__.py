"""The console's page modules: each has a `router` and its `NAV` entries."""
