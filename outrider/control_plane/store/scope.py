"""Which tenants a read may see (:class:`Scope`): every read that routes and the console make takes one, and turns
it into SQL conditions on a table's namespace and target columns."""

from __future__ import annotations

import dataclasses
from typing import Any

#: The namespace of events that name none, and of everything stored before namespaces existed (migration 0007).
DEFAULT_NAMESPACE = "default"


@dataclasses.dataclass(frozen=True, slots=True)
class Scope:
    """Which tenants a read may see: namespaces and targets (None: all). Built from the caller's principal and
    an optional ``?namespace=`` filter (``Scope.of``); every read that routes and the console make takes one."""

    namespaces: frozenset[str] | None = None
    targets: frozenset[str] | None = None

    @classmethod
    def of(cls, principal: Any, namespace: str | None = None) -> Scope:
        namespaces = principal.namespaces
        if namespace is not None:
            namespaces = frozenset({namespace}) if namespaces is None else namespaces & {namespace}
        return cls(namespaces, principal.targets)

    def sees(self, namespace: str | None, target: str | None) -> bool:
        if self.namespaces is not None and (namespace or DEFAULT_NAMESPACE) not in self.namespaces:
            return False
        return self.targets is None or (target is not None and target in self.targets)

    def only_target(self, target: str | None) -> Scope:
        """This scope narrowed to one target (a ``?target=`` filter); unchanged for None. A target outside the
        principal's bounds narrows to nothing."""
        if target is None:
            return self
        return dataclasses.replace(self, targets=frozenset({target}) if self.targets is None else self.targets & {target})

    def where(self, namespace: Any, target: Any) -> list[Any]:
        """SQL conditions on a table's namespace and target columns."""
        conditions = []
        if self.namespaces is not None:
            conditions.append(namespace.in_(sorted(self.namespaces)))
        if self.targets is not None:
            conditions.append(target.in_(sorted(self.targets)))
        return conditions


#: Every tenant (the operator, admins, /metrics).
EVERYTHING = Scope()


def narrowed(table: Any, scope: Scope, target: str | None = None) -> list[Any]:
    """Conditions of ``scope`` and an optional ``target`` on a rollup table; one without a target column (a
    ``*_all`` table, read only when nothing narrows to targets) takes the namespaces only."""
    if "target" not in table.c:
        return [table.c.namespace.in_(sorted(scope.namespaces))] if scope.namespaces is not None else []
    return [*scope.where(table.c.namespace, table.c.target), *([table.c.target == target] if target is not None else [])]


def over_targets(scope: Scope, target: str | None) -> bool:
    """Whether a read may use the rollups summed over targets: nothing narrows it to some targets."""
    return target is None and scope.targets is None
