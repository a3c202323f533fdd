"""HTTP service: settings, storage, online state, routes, web page."""
