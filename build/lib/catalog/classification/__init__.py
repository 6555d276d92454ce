"""PII classification: detection by name rules, producers' declared tags, stewards' decisions, propagation."""
