"""Typed Python client for the lineage catalog.

- pipelines: `catalog_client.pipelines.Emitter` (START / COMPLETE / FAIL on openlineage-python) and facet
  helpers;
- engineers: `CatalogClient` / `AsyncCatalogClient` over REST and GraphQL;
- auditors: `catalog_client.audit.verify_bundle` on a bundle fetched with `CatalogClient.export`.
"""

from catalog_client import models
from catalog_client._protocol import RetryPolicy
from catalog_client._requests import dataset_node, field_node, job_node
from catalog_client.client import AsyncCatalogClient, CatalogClient
from catalog_client.errors import (
    ApiError,
    BadRequest,
    CatalogError,
    ConfigurationError,
    Forbidden,
    GraphQLError,
    NotFound,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    TransportError,
    Unauthenticated,
    Unprocessable,
)

__version__ = "0.1.0"

__all__ = [
    "ApiError",
    "AsyncCatalogClient",
    "BadRequest",
    "CatalogClient",
    "CatalogError",
    "ConfigurationError",
    "Forbidden",
    "GraphQLError",
    "NotFound",
    "RateLimited",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailable",
    "TransportError",
    "Unauthenticated",
    "Unprocessable",
    "dataset_node",
    "field_node",
    "job_node",
    "models",
]
