"""Product boundaries: products.yaml mapping, the Casbin enforcer, runtime grants, denials."""
