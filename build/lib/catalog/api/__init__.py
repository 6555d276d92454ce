"""HTTP APIs: REST (Marquez-compatible paths) now, GraphQL later."""
