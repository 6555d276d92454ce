"""The Alembic scripts (env.py, versions/) shipped in the package, and the metadata of every table.

Above the domains, not in `catalog/db/`: the complete metadata needs every domain's models, and the
database layer they all build on must not import them back."""
