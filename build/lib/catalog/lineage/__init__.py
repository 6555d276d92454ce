"""Lineage graph storage: job inputs/outputs and column-level edges."""
