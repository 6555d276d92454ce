"""REST routers, problem+json errors and the authentication dependency."""
