"""Tags: a vocabulary of labels put on datasets and their fields by people (Marquez-compatible)."""
