from .clients import ClientProfile
from .codes import RedeemedCode
from .keys import SigningKey
from .tenants import Tenant, TenantMembership

__all__ = ["ClientProfile", "RedeemedCode", "SigningKey", "Tenant", "TenantMembership"]
