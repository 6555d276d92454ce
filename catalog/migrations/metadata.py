"""The metadata of every table: each domain's models imported (Alembic's autogenerate, the schema test)."""

from __future__ import annotations

from sqlalchemy import MetaData

from catalog.audit import models as _audit  # noqa: F401
from catalog.auth import models as _auth  # noqa: F401
from catalog.classification import models as _classification  # noqa: F401
from catalog.db.base import Base
from catalog.findings import models as _findings  # noqa: F401
from catalog.ingest import models as _ingest  # noqa: F401
from catalog.lineage import models as _lineage  # noqa: F401
from catalog.metadata import models as _metadata  # noqa: F401
from catalog.policy import models as _policy  # noqa: F401
from catalog.tags import models as _tags  # noqa: F401

ALL_TABLES: MetaData = Base.metadata
