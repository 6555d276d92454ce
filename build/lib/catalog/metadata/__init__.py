"""The catalog entities projected from events: namespaces, datasets, fields, versions, jobs, runs."""
