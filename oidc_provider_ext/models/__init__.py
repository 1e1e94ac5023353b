from .backchannel import BackchannelDelivery
from .clients import ClientProfile
from .consents import Consent
from .devices import DeviceAuthorization
from .grants import AuthorizationGrant
from .keys import SigningKey
from .sessions import OPSession
from .tenants import Tenant, TenantMembership

__all__ = [
    "BackchannelDelivery",
    "AuthorizationGrant",
    "ClientProfile",
    "Consent",
    "DeviceAuthorization",
    "OPSession",
    "SigningKey",
    "Tenant",
    "TenantMembership",
]
