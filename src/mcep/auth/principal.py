"""Who is calling, and the one place that decides what they may see and change.

Every repository query over PM-owned data goes through :func:`scope_to_owner`, so a PM can only
ever see its own rows; another PM's object is simply not found (404), which leaks nothing.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select

from mcep.auth.models import Role
from mcep.errors import Forbidden

T = TypeVar("T")


class Permission(enum.StrEnum):
    OWNED_READ = "owned:read"  # prospects, campaigns, leads, webhooks
    OWNED_WRITE = "owned:write"
    COMPLIANCE_WRITE = "compliance:write"  # rules, review decisions, erasure
    USERS_MANAGE = "users:manage"
    DEVICES_MANAGE = "devices:manage"
    AUDIT_READ = "audit:read"


GRANTS: dict[Role, frozenset[Permission]] = {
    Role.PM: frozenset({Permission.OWNED_READ, Permission.OWNED_WRITE}),
    Role.COMPLIANCE: frozenset(
        {Permission.OWNED_READ, Permission.COMPLIANCE_WRITE, Permission.AUDIT_READ}
    ),
    Role.ADMIN: frozenset(
        {Permission.USERS_MANAGE, Permission.DEVICES_MANAGE, Permission.AUDIT_READ}
    ),
}


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: uuid.UUID
    email: str
    role: Role
    pm_id: uuid.UUID | None = None

    @property
    def actor(self) -> str:
        """How the audit chain names this caller."""
        return f"user:{self.user_id}"

    def can(self, permission: Permission) -> bool:
        return permission in GRANTS[self.role]

    def require(self, permission: Permission) -> None:
        if not self.can(permission):
            raise Forbidden(f"the {self.role} role may not do this ({permission})")

    def owner_pm_id(self) -> uuid.UUID:
        """The PM on whose behalf a PM user creates objects."""
        if self.role is not Role.PM or self.pm_id is None:
            raise Forbidden("only a PM user can own prospects, campaigns, leads and webhooks")
        return self.pm_id


def scope_to_owner(stmt: Select[T], pm_column: Any, principal: Principal) -> Select[T]:
    """Restrict a query to the caller's PM when the caller is a PM; others see all rows."""
    if principal.role is Role.PM:
        return stmt.where(pm_column == principal.pm_id)
    return stmt
