"""Manage the signing keys: list, create, rotate, prune (see docs/operations.md, "Signing keys").

Rotation is safe only when relying parties already know the key that starts signing, so every
command that changes keys says how long to wait before the next step.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError, transaction
from django.utils import timezone

from oidc_provider_ext import keys
from oidc_provider_ext.checks import PER_PROCESS_CACHES
from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.models import SigningKey


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"


def _readable(key: SigningKey) -> bool:
    try:
        keys.private_jwk(key)
    except keys.KeyDecryptionError:
        return False
    return True


class Command(BaseCommand):
    help = "Manage the ID token / access token signing keys: list, create, rotate, prune, reencrypt."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(
            dest="action", required=True, metavar="{list,create,rotate,prune,reencrypt}"
        )
        actions.add_parser("list", help="Show every key with its state and dates.")
        create = actions.add_parser("create", help="Create a key (state 'next' unless --active).")
        create.add_argument("--alg", choices=keys.SUPPORTED_ALGS, help="Default: SIGNING_ALG.")
        create.add_argument(
            "--active",
            action="store_true",
            help="Sign with it at once (only when no active key of this algorithm exists).",
        )
        rotate = actions.add_parser("rotate", help="next -> active, active -> retired, new next.")
        rotate.add_argument("--alg", choices=keys.SUPPORTED_ALGS, help="Default: SIGNING_ALG.")
        prune = actions.add_parser("prune", help="Delete retired keys whose every token has expired.")
        prune.add_argument("--dry-run", action="store_true", help="Only show what would be removed.")
        actions.add_parser(
            "reencrypt",
            help="Encrypt every private key and authenticator-app key under the first of SECRET_KEYS.",
        )

    def handle(self, *args, action: str, **options):
        try:
            getattr(self, f"_{action}")(**options)
        except keys.KeyDecryptionError as exc:
            raise CommandError(str(exc)) from exc

    # --- reencrypt -----------------------------------------------------------------------------

    def _reencrypt(self, **options):
        rewritten = keys.reencrypt()
        self.stdout.write(f"Re-encrypted {rewritten} key(s) under the current secret.")
        from oidc_provider_ext.internal import totp

        apps = totp.reencrypt()
        self.stdout.write(f"Re-encrypted {apps} authenticator-app key(s) under the current secret.")

    # --- list ----------------------------------------------------------------------------------

    def _list(self, **options):
        rows = list(SigningKey.objects.order_by("alg", "created"))
        if not rows:
            self.stdout.write(
                f"No signing keys. The first token signed creates an active {app_settings.SIGNING_ALG} "
                "key; run `oidc_keys rotate` to create an active and a next key now."
            )
            return
        table = [("KID", "ALG", "STATE", "CREATED", "ACTIVATED", "RETIRED", "PRUNABLE AFTER")]
        table += [
            (
                key.kid,
                key.alg,
                key.state,
                _when(key.created),
                _when(key.activated),
                _when(key.retired),
                _when(keys.prunable_after(key)),
            )
            for key in rows
        ]
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        for row in table:
            self.stdout.write(
                "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            )
        unreadable = [key.kid for key in rows if not _readable(key)]
        if unreadable:
            self.stderr.write(
                self.style.WARNING(
                    f"{len(unreadable)} key(s) cannot be decrypted with any of SECRET_KEYS "
                    f"(or SECRET_KEY): {', '.join(unreadable)}. Restore the secret they were stored with; "
                    "see 'Signing keys' in docs/operations.md if it is lost."
                )
            )

    # --- create --------------------------------------------------------------------------------

    def _create(self, *, alg: str | None, active: bool, **options):
        alg = alg or app_settings.SIGNING_ALG
        state = SigningKey.State.ACTIVE if active else SigningKey.State.NEXT
        current = SigningKey.objects.filter(alg=alg, state=SigningKey.State.ACTIVE).first()
        if active and current is not None:
            raise CommandError(
                f"An active {alg} key exists ({current.kid}). Replace it with `oidc_keys rotate --alg {alg}`."
            )
        try:
            with transaction.atomic():
                key = keys.create_key(alg, state)
        except IntegrityError as exc:  # another process activated one meanwhile
            raise CommandError(f"An active {alg} key was created meanwhile: {exc}.") from exc
        self.stdout.write(self.style.SUCCESS(f"Created {alg} key {key.kid} ({key.state})."))
        if active:
            self.stdout.write("It signs new tokens now and is published in the JWKS.")
        else:
            self.stdout.write(
                f"It is published in the JWKS now. Wait at least {app_settings.JWKS_MAX_AGE_SECONDS} s "
                f"(JWKS_MAX_AGE_SECONDS) before `oidc_keys rotate --alg {alg}`, so relying parties that "
                "cache the JWKS know it before it signs."
            )
        self._propagation_note()

    # --- rotate --------------------------------------------------------------------------------

    def _rotate(self, *, alg: str | None, **options):
        alg = alg or app_settings.SIGNING_ALG
        rotation = keys.rotate(alg)
        self.stdout.write(self.style.SUCCESS(f"Rotated the {alg} keys."))
        if rotation.retired is not None:
            until = _when(keys.prunable_after(rotation.retired))
            self.stdout.write(f"  retired  {rotation.retired.kid}  published until {until}")
        self.stdout.write(f"  active   {rotation.activated.kid}  signs new tokens from now on")
        self.stdout.write(
            f"  next     {rotation.next.kid}  published now; the key the next rotation activates"
        )
        self._warn_if_unannounced(rotation)
        self.stdout.write(
            f"Rotate again no sooner than {app_settings.JWKS_MAX_AGE_SECONDS} s (JWKS_MAX_AGE_SECONDS) "
            "from now: a next key must be published that long before it signs, so relying parties that "
            "cache the JWKS see it."
        )
        if rotation.retired is not None:
            self.stdout.write("Run `oidc_keys prune` after the retired key's date above.")
        self._propagation_note()

    def _warn_if_unannounced(self, rotation: keys.Rotation) -> None:
        max_age = app_settings.JWKS_MAX_AGE_SECONDS
        published_for = (timezone.now() - rotation.activated.created).total_seconds()
        if rotation.was_published and published_for >= max_age:
            return
        published = (
            f"was published only {int(published_for)} s ago"
            if rotation.was_published
            else "was not published before it started signing (there was no next key)"
        )
        self.stderr.write(
            self.style.WARNING(
                f"Warning: the new active key {rotation.activated.kid} {published}. Relying parties may "
                f"cache the JWKS for {max_age} s and reject its tokens until they refetch it. Next time "
                "create the next key (`oidc_keys create`) at least that long before rotating."
            )
        )

    # --- prune ---------------------------------------------------------------------------------

    def _prune(self, *, dry_run: bool, **options):
        removed = keys.prune(dry_run=dry_run)
        verb = "Would remove" if dry_run else "Removed"
        if not removed:
            self.stdout.write("Nothing to prune: every retired key may still verify a live token.")
        else:
            self.stdout.write(self.style.SUCCESS(f"{verb} {len(removed)} retired key(s):"))
            for key in removed:
                self.stdout.write(f"  {key.kid}  {key.alg}  retired {_when(key.retired)}")
        waiting = SigningKey.objects.filter(state=SigningKey.State.RETIRED).exclude(
            pk__in=[key.pk for key in removed]
        )
        for key in waiting.order_by("retired"):
            self.stdout.write(
                f"  kept {key.kid}  {key.alg}  prunable after {_when(keys.prunable_after(key))}"
            )

    def _propagation_note(self) -> None:
        backend = settings.CACHES.get("default", {}).get("BACKEND", "")
        if backend in PER_PROCESS_CACHES:  # other workers wait for their snapshot to expire
            self.stdout.write(
                f"Note: the cache ({backend.rsplit('.', 1)[-1]}) is per process, so running workers "
                f"pick the change up within {keys.SNAPSHOT_TTL_SECONDS} s, not at once."
            )
