"""API keys: creation, hashing, verification."""
