"""Database access: the engine, the embedded PostgreSQL launcher, migrations and partitions."""
