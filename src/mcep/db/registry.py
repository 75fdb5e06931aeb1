"""Imports every domain's tables so that ``Base.metadata`` is complete (for Alembic)."""

from mcep.audit import models as audit_models
from mcep.auth import models as auth_models
from mcep.contacts import models as contacts_models
from mcep.db.base import Base

__all__ = ["Base", "audit_models", "auth_models", "contacts_models"]
