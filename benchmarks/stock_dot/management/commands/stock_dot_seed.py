"""Create the benchmark user and a confidential client the way a DOT site does (DOT's defaults:
the secret is hashed with Django's default hasher on save). Prints JSON for benchmarks/run.py."""

import json
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from oauth2_provider.models import get_application_model


class Command(BaseCommand):
    help = "Create (or reset) the benchmark user and confidential client; print them as JSON."

    def add_arguments(self, parser):
        parser.add_argument("--redirect-uri", required=True)

    def handle(self, *args, redirect_uri, **options):
        password = secrets.token_urlsafe(12)
        client_secret = secrets.token_urlsafe(32)
        user, _ = get_user_model().objects.get_or_create(username="demo")
        user.set_password(password)
        user.save()
        Application = get_application_model()
        Application.objects.filter(client_id="bench-confidential").delete()
        Application.objects.create(
            client_id="bench-confidential",
            client_secret=client_secret,
            name="Benchmark client (confidential)",
            user=user,
            redirect_uris=redirect_uri,
            client_type=Application.CLIENT_CONFIDENTIAL,
            authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
            algorithm=Application.RS256_ALGORITHM,
        )
        data = {
            "user": {"username": "demo", "password": password},
            "confidential": {
                "client_id": "bench-confidential",
                "client_secret": client_secret,
                "redirect_uri": redirect_uri,
            },
        }
        self.stdout.write(json.dumps(data))
