"""Signed compliance bundles (zip: CSV + JSON + an HTML report + a signed manifest) and their verification."""
