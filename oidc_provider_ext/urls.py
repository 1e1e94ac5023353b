"""URLconf of the provider: ``path("", include("oidc_provider_ext.urls"))`` in the root URLconf
mounts the endpoints under ``/connect/`` and discovery at the issuer root
(``/.well-known/openid-configuration``, OIDC Discovery 4).

The lists are composable, so a site can mount a subset or another prefix::

    path("", include(([path("oauth/", include(endpoint_urlpatterns)), *discovery_urlpatterns],
                      "oidc_provider_ext")))
"""

from django.urls import include, path

from .views import (
    account,
    authorize,
    discovery,
    endsession,
    introspection,
    jwks,
    login,
    password_reset,
    registration,
    revocation,
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
    path("token", token.TokenView.as_view(), name="token"),
    path("revocation", revocation.RevocationView.as_view(), name="revocation"),
    path("introspect", introspection.IntrospectionView.as_view(), name="introspect"),
    path("register", registration.RegistrationView.as_view(), name="register"),
    path("register/<str:client_id>", registration.RegistrationClientView.as_view(), name="register-client"),
    path("login", login.LoginView.as_view(), name="login"),
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
]

oidc_urlpatterns = [
    path("userinfo", userinfo.UserInfoView.as_view(), name="userinfo"),
    path("jwks", jwks.JwksView.as_view(), name="jwks"),
    path("endsession", endsession.EndSessionView.as_view(), name="endsession"),
]

endpoint_urlpatterns = oauth2_urlpatterns + oidc_urlpatterns

discovery_urlpatterns = [
    path(".well-known/openid-configuration", discovery.DiscoveryView.as_view(), name="discovery"),
]

urlpatterns = [path("connect/", include(endpoint_urlpatterns)), *discovery_urlpatterns]
