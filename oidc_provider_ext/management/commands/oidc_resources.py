"""Manage resource servers (RFC 8707): ``add``, ``list``, ``remove`` (docs/resource-servers.md)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from oauth2_provider.models import get_application_model

from oidc_provider_ext.models import ResourceServer


class Command(BaseCommand):
    help = "Manage the resource servers (APIs) access tokens can be issued for: add, list, remove."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True, metavar="{add,list,remove}")
        add = actions.add_parser("add", help="Register a resource server.")
        add.add_argument("identifier", help="Its resource indicator / aud, e.g. https://api.example.com/mcp.")
        add.add_argument("--name", required=True, help="Shown on the consent page.")
        add.add_argument("--scopes", default="", help="Space-separated scopes it accepts.")
        add.add_argument(
            "--lifetime", type=int, help="Access-token lifetime in seconds (default: the site's)."
        )
        add.add_argument(
            "--client", action="append", default=[], dest="clients", help="client_id allowed (repeatable)."
        )
        add.add_argument("--any-client", action="store_true", help="Allow every client (not recommended).")
        add.add_argument("--tenants", default="", help="Space-separated tenant codes it belongs to.")
        add.add_argument("--disabled", action="store_true", help="Register it disabled.")
        actions.add_parser("list", help="Show every resource server.")
        remove = actions.add_parser(
            "remove", help="Delete a resource server (its tokens stay valid until they expire)."
        )
        remove.add_argument("identifier")

    def handle(self, *args, action: str, **options):
        getattr(self, f"_{action}")(**options)

    def _add(self, *, identifier, name, scopes, lifetime, clients, any_client, tenants, disabled, **options):
        Application = get_application_model()
        found = list(Application.objects.filter(client_id__in=clients))
        unknown = sorted(set(clients) - {client.client_id for client in found})
        if unknown:
            raise CommandError(f"Resource server not created: no client {', '.join(unknown)}.")
        server = ResourceServer(
            identifier=identifier,
            name=name,
            scopes=scopes,
            access_token_lifetime=lifetime,
            any_client=any_client,
            tenant_codes=tenants,
            enabled=not disabled,
        )
        try:
            server.full_clean()
        except ValidationError as exc:
            problems = "; ".join(f"{key}: {' '.join(msgs)}" for key, msgs in exc.message_dict.items())
            raise CommandError(f"Resource server not created: {problems}") from exc
        with transaction.atomic():
            server.save()
            server.allowed_clients.set(found)
        self.stdout.write(self.style.SUCCESS(f"Resource server {server.name!r} created: {server.identifier}"))
        if not found and not any_client:
            self.stdout.write(
                self.style.WARNING("No client may use it yet: add --client or allow clients in the admin.")
            )

    def _list(self, **options):
        servers = list(ResourceServer.objects.prefetch_related("allowed_clients"))
        if not servers:
            self.stdout.write("No resource servers.")
            return
        for server in servers:
            clients = (
                "any client"
                if server.any_client
                else " ".join(client.client_id for client in server.allowed_clients.all()) or "no client"
            )
            state = "enabled" if server.enabled else "disabled"
            self.stdout.write(
                f"{server.identifier}\t{server.name}\t{state}\tscopes: {server.scopes or '-'}\t"
                f"clients: {clients}\ttenants: {server.tenant_codes or 'any'}"
            )

    def _remove(self, *, identifier, **options):
        deleted, _ = ResourceServer.objects.filter(identifier=identifier).delete()
        if not deleted:
            raise CommandError(f"No resource server {identifier!r}.")
        self.stdout.write(f"Resource server {identifier} removed.")
