from .backchannel import BackchannelDelivery
from .clients import ClientProfile
from .consents import Consent
from .factors import RecoveryCode, TOTPDevice
from .grants import AuthorizationGrant
from .keys import SigningKey
from .sessions import OPSession
from .tenants import Tenant, TenantMembership

__all__ = [
    "BackchannelDelivery",
    "AuthorizationGrant",
    "ClientProfile",
    "Consent",
    "OPSession",
    "RecoveryCode",
    "SigningKey",
    "TOTPDevice",
    "Tenant",
    "TenantMembership",
]
