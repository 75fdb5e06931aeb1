"""Imports every domain's tables so that ``Base.metadata`` is complete (for Alembic)."""

from mcep.audit import models as audit_models
from mcep.auth import models as auth_models
from mcep.campaigns import models as campaigns_models
from mcep.contacts import models as contacts_models
from mcep.db.base import Base
from mcep.dispatch import models as dispatch_models
from mcep.experiments import models as experiments_models
from mcep.fleet import models as fleet_models
from mcep.inbound import models as inbound_models
from mcep.scoring import models as scoring_models  # noqa: F401

__all__ = ["Base", "audit_models", "auth_models", "contacts_models"]
__all__ += ["campaigns_models", "dispatch_models", "fleet_models"]
__all__ += ["inbound_models"]
__all__ += ["experiments_models"]
