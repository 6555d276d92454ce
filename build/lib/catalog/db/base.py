"""The declarative base every domain's models share, so Alembic and the schema test see one metadata."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import DateTime, MetaData
from sqlalchemy.orm import DeclarativeBase

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dt.datetime: DateTime(timezone=True)}


def import_all_models() -> MetaData:
    """Import every domain's models so the metadata is complete (Alembic, schema checks)."""
    from catalog.audit import models as _audit  # noqa: F401
    from catalog.auth import models as _auth  # noqa: F401
    from catalog.classification import models as _classification  # noqa: F401
    from catalog.findings import models as _findings  # noqa: F401
    from catalog.ingest import models as _ingest  # noqa: F401
    from catalog.lineage import models as _lineage  # noqa: F401
    from catalog.metadata import models as _metadata  # noqa: F401
    from catalog.policy import models as _policy  # noqa: F401
    from catalog.tags import models as _tags  # noqa: F401

    return Base.metadata
