"""DOT's ``createapplication``, limited to the grants this provider serves, printing what a relying
party needs: the client_id and (once) the generated secret."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from oauth2_provider.management.commands.createapplication import Command as CreateApplication
from oauth2_provider.models import get_application_model

from oidc_provider_ext.internal import resources
from oidc_provider_ext.models import ClientProfile
from oidc_provider_ext.server import CLIENT_GRANT_TYPES


class Command(CreateApplication):
    help = (
        "Create a client (an OAuth2 application): client type confidential or public, grant type "
        f"{' or '.join(CLIENT_GRANT_TYPES)}. Prints its client_id and, if generated, its secret."
    )

    def add_arguments(self, parser):
        super().add_arguments(parser)
        for action in parser._actions:
            if action.dest == "authorization_grant_type":
                # The only grants server.Server has; DOT's others end in unsupported_grant_type.
                action.choices = CLIENT_GRANT_TYPES
                action.help = f"One of: {', '.join(CLIENT_GRANT_TYPES)}."
            elif action.dest == "client_type":
                action.choices = ("confidential", "public")
        parser.add_argument(
            "--allow-device-flow",
            action="store_true",
            help="Let the client sign users in with a code entered on another device (RFC 8628); "
            "needs the authorization-code grant type.",
        )

    def handle(self, *args, **options):
        Application = get_application_model()
        fields = {field.name for field in Application._meta.fields}
        data = {}
        for key, value in options.items():
            if key in fields and (isinstance(value, bool) or value):
                data["user_id" if key == "user" else key] = value
        client = Application(**data)
        try:
            client.full_clean()
        except ValidationError as exc:
            problems = "; ".join(f"{key}: {' '.join(msgs)}" for key, msgs in exc.message_dict.items())
            raise CommandError(f"Client not created: {problems}") from exc
        if resources.is_identifier_of_a_resource_server(client.client_id):
            raise CommandError(f"Client not created: client_id: {resources.CLIENT_ID_IS_A_RESOURCE}")
        if options.get("allow_device_flow") and client.authorization_grant_type != "authorization-code":
            raise CommandError(
                "Client not created: --allow-device-flow needs the authorization-code grant type."
            )
        raw_secret = client.client_secret
        client.save()  # the secret is hashed here (pre_save), unless --no-hash-client-secret
        if options.get("allow_device_flow"):
            ClientProfile.objects.update_or_create(application=client, defaults={"allow_device_flow": True})
        self.stdout.write(self.style.SUCCESS(f"Client {client.name or client.client_id!r} created."))
        self.stdout.write(f"client_id: {client.client_id}")
        if "client_secret" not in data and raw_secret:
            self.stdout.write(
                f"client_secret: {raw_secret}\n(stored only as a hash: copy it now, it cannot be shown again)"
            )
