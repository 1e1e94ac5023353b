"""CPU per code exchange and per refresh of ``idp_project`` in one process (Django's test client),
for comparing two checkouts in the same minutes (docs/performance.md, issue 15 third round).

    DATABASE_URL=sqlite:////tmp/x.sqlite3 python benchmarks/exchange_cpu.py [CHECKOUT] [N] [ROUNDS]

CHECKOUT (default: this one) is the source tree measured; its ``tests`` package mints the codes.
A test database is created from DATABASE_URL (SQLite: a WAL file beside the checkout, as
``idp_project`` configures it; PostgreSQL: ``test_<name>``) and destroyed afterwards. Each round
mints N codes (PKCE S256, scope ``openid offline_access``), then times their exchanges and the
refreshes of the refresh tokens they return with ``time.process_time``; prints the median and the
minimum of the rounds in ms. Set PROFILE=tottime (or cumulative) for a cProfile of one more round.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import statistics
import sys
import time
from pathlib import Path


def main() -> None:
    tree = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent).resolve()
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    sys.path.insert(0, str(tree))
    os.chdir(tree)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "idp_project.settings")
    os.environ["OIDC_CODE_EXPIRE_SECONDS"] = "600"
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment

    import oidc_provider_ext

    assert Path(oidc_provider_ext.__file__).is_relative_to(tree), oidc_provider_ext.__file__
    # The user's password hash is the sign-in's cost, not the token endpoint's.
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        "oidc_provider_ext.hashers.ClientSecretHasher",
    ]
    setup_test_environment()
    name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        from tests.factories import ApplicationFactory, UserFactory
        from tests.flow import exchange, get_code, pkce_pair, refresh

        user, app = UserFactory(), ApplicationFactory()
        browser, rp = Client(), Client()

        def mint(k: int) -> list[tuple[str, str]]:
            codes = []
            for _ in range(k):
                verifier, challenge = pkce_pair()
                code, _ = get_code(
                    browser,
                    app,
                    user,
                    scope="openid offline_access",
                    code_challenge=challenge,
                    code_challenge_method="S256",
                )
                codes.append((code, verifier))
            return codes

        def exchanges(codes) -> tuple[float, list[str]]:
            tokens = []
            started = time.process_time()
            for code, verifier in codes:
                response = exchange(rp, app, code, verifier)
                assert response.status_code == 200, response.content
                tokens.append(response.json()["refresh_token"])
            return (time.process_time() - started) / len(codes) * 1000, tokens

        def refreshes(tokens) -> float:
            started = time.process_time()
            for token in tokens:
                response = refresh(rp, app, token)
                assert response.status_code == 200, response.content
            return (time.process_time() - started) / len(tokens) * 1000

        refreshes(exchanges(mint(5))[1])  # warm: keys, client cache, URL resolver
        exchange_ms, refresh_ms = [], []
        for _ in range(rounds):
            ms, tokens = exchanges(mint(n))
            exchange_ms.append(ms)
            refresh_ms.append(refreshes(tokens))
        if os.environ.get("PROFILE"):
            codes = mint(n)
            for what, run in (("exchange", lambda: exchanges(codes)[1]), ("refresh", None)):
                profiler = cProfile.Profile(time.process_time)
                profiler.enable()
                tokens = run() if run else refreshes(tokens)
                profiler.disable()
                print(f"--- {what} x{n}")
                pstats.Stats(profiler).sort_stats(os.environ["PROFILE"]).print_stats(40)
        print(
            f"{tree.name} {connection.vendor}: exchange median {statistics.median(exchange_ms):.2f} "
            f"min {min(exchange_ms):.2f}, refresh median {statistics.median(refresh_ms):.2f} "
            f"min {min(refresh_ms):.2f} ms CPU ({rounds} rounds of {n})"
        )
    finally:
        connection.creation.destroy_test_db(name, verbosity=0)


if __name__ == "__main__":
    main()
