"""The hash-chained audit log of every change and every denied or flagged decision, and its signing keys."""
