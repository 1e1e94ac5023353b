"""URLconf of the provider: ``path("", include("oidc_provider_ext.urls"))`` in the root URLconf
mounts the endpoints under ``/connect/`` and discovery at the issuer root
(``/.well-known/openid-configuration``, OIDC Discovery 4).

The lists are composable, so a site can mount a subset or another prefix::

    path("", include(([path("oauth/", include(endpoint_urlpatterns)), *discovery_urlpatterns,
                       *well_known_urlpatterns], "oidc_provider_ext")))
"""

from django.urls import include, path

from .resource.urls import protected_resource_urlpatterns
from .views import (
    account,
    authorize,
    challenge,
    device,
    device_authorization,
    discovery,
    endsession,
    introspection,
    jwks,
    login,
    passkeys,
    password_reset,
    registration,
    revocation,
    security,
    token,
    userinfo,
)

app_name = "oidc_provider_ext"

oauth2_urlpatterns = [
    path("authorize", authorize.AuthorizeView.as_view(), name="authorize"),
    path(
        "authorize/continue/<str:request_id>",
        authorize.AuthorizeContinueView.as_view(),
        name="authorize-continue",
    ),
    path(
        "authorize/step-up/<str:request_id>",
        challenge.StepUpView.as_view(),
        name="authorize-step-up",
    ),
    path("token", token.TokenView.as_view(), name="token"),
    # RFC 8628 device authorization grant: the device's endpoint and the user's code-entry page.
    path(
        "device_authorization",
        device_authorization.DeviceAuthorizationView.as_view(),
        name="device-authorization",
    ),
    path("device", device.DeviceView.as_view(), name="device"),
    path("device/continue/<str:request_id>", device.DeviceContinueView.as_view(), name="device-continue"),
    path("revocation", revocation.RevocationView.as_view(), name="revocation"),
    path("introspect", introspection.IntrospectionView.as_view(), name="introspect"),
    path("register", registration.RegistrationView.as_view(), name="register"),
    path("register/<str:client_id>", registration.RegistrationClientView.as_view(), name="register-client"),
    path("login", login.LoginView.as_view(), name="login"),
    path("login/verify", challenge.SignInChallengeView.as_view(), name="login-verify"),
    path("password/reset", password_reset.PasswordResetView.as_view(), name="password-reset"),
    path("password/reset/sent", password_reset.PasswordResetDoneView.as_view(), name="password-reset-done"),
    path(
        "password/reset/<uidb64>/<token>",
        password_reset.PasswordResetConfirmView.as_view(),
        name="password-reset-confirm",
    ),
    path(
        "password/reset/done",
        password_reset.PasswordResetCompleteView.as_view(),
        name="password-reset-complete",
    ),
    path("apps", account.ConnectedAppsView.as_view(), name="connected-apps"),
    path("apps/<int:pk>/revoke", account.RevokeAppView.as_view(), name="connected-app-revoke"),
    path("sessions", account.SessionsView.as_view(), name="sessions"),
    path("sessions/<int:pk>/end", account.EndOPSessionView.as_view(), name="session-end"),
    path("account/passkeys", passkeys.PasskeysView.as_view(), name="passkeys"),
    path(
        "account/passkeys/options",
        passkeys.RegistrationOptionsView.as_view(),
        name="passkey-registration-options",
    ),
    path("account/passkeys/<int:pk>/rename", passkeys.RenamePasskeyView.as_view(), name="passkey-rename"),
    path("account/passkeys/<int:pk>/remove", passkeys.RemovePasskeyView.as_view(), name="passkey-remove"),
    path("passkeys/options", passkeys.SignInOptionsView.as_view(), name="passkey-options"),
    path("security", security.SecurityView.as_view(), name="account-security"),
    path("security/app", security.TOTPEnrolView.as_view(), name="account-totp"),
    path("security/confirm", security.AccountStepUpView.as_view(), name="account-step-up"),
    path("security/app/remove", security.TOTPRemoveView.as_view(), name="account-totp-remove"),
    path("security/recovery-codes", security.RecoveryCodesView.as_view(), name="account-recovery-codes"),
]

oidc_urlpatterns = [
    path("userinfo", userinfo.UserInfoView.as_view(), name="userinfo"),
    path("jwks", jwks.JwksView.as_view(), name="jwks"),
    path("endsession", endsession.EndSessionView.as_view(), name="endsession"),
]

# userinfo first: Django tries the patterns in order (~2 µs each), and it is the hottest bearer
# endpoint; no two of these patterns match the same path, so the order changes nothing else.
endpoint_urlpatterns = oidc_urlpatterns + oauth2_urlpatterns

discovery_urlpatterns = [
    path(".well-known/openid-configuration", discovery.DiscoveryView.as_view(), name="discovery"),
    # RFC 9728 3: metadata of the APIs this project protects (RESOURCE_SERVER_IDENTIFIER, resource=).
    *protected_resource_urlpatterns,
]

# RFC 8414 3: at the root of the host, whatever the mount point; the issuer's path is inserted after
# the well-known name. A site that mounts the provider under a path includes these at its root too:
#     path("", include((well_known_urlpatterns, "oidc_provider_ext_well_known")))
well_known_urlpatterns = [
    path(
        ".well-known/oauth-authorization-server",
        discovery.AuthorizationServerMetadataView.as_view(),
        name="oauth-authorization-server",
    ),
    path(
        ".well-known/oauth-authorization-server/<path:issuer_path>",
        discovery.AuthorizationServerMetadataView.as_view(),
        name="oauth-authorization-server-path",
    ),
    path(
        ".well-known/openid-configuration/<path:issuer_path>",
        discovery.AuthorizationServerMetadataView.as_view(),
        name="openid-configuration-path",
    ),
]

urlpatterns = [
    path("connect/", include(endpoint_urlpatterns)),
    *discovery_urlpatterns,
    *well_known_urlpatterns,
]
