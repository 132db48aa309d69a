"""The ServiceAccount the booking pods run as (no token mounted: they never call the API server)."""

from __future__ import annotations

from booking_operator import names
from booking_operator.builders.common import Manifest, metadata
from booking_operator.spec import Platform


def build_service_account(platform: Platform) -> Manifest | None:
    """The ServiceAccount, or None when the spec names an existing one."""
    if platform.spec.service_account_name:
        return None
    name = names.service_account_name(platform.name, platform.spec.environment)
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(platform, name, names.SERVICE_ACCOUNT_COMPONENT),
        "automountServiceAccountToken": False,
    }
