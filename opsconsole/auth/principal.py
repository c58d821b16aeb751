"""Who is logged in, and what their role lets them do."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["viewer", "operator"]
ROLES: tuple[Role, ...] = ("viewer", "operator")
# Each role includes the ones ranked below it.
_RANK: dict[Role, int] = {"viewer": 0, "operator": 1}


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated operator: the user name, role and the key that logged in."""

    user: str
    role: Role
    key_fingerprint: str

    def has(self, needed: Role) -> bool:
        """True when this principal's role is ``needed`` or above it."""
        return _RANK[self.role] >= _RANK[needed]
