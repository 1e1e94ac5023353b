"""Bulk-insert N tokens of history into a benchmark database, in SQL (minutes for a million rows
through the ORM would become hours): per token an ID token, an access token, a refresh token and,
for this project, the AuthorizationGrant it came from. Tokens belong to PREFILL_USERS synthetic
users and the benchmark client, so the measured user is not the owner of every row.

Token values are short placeholders (real JWT access tokens are ~1 kB): lookups go through the
64-character ``token_checksum`` indexes, which are realistic; only the heap is smaller.

PostgreSQL: ``INSERT … SELECT generate_series`` in chunks, sequences moved past the new ids, then
``ANALYZE`` (what autovacuum would do on a live database). SQLite: a recursive CTE per chunk; no
``ANALYZE`` (Django never runs it, so a real SQLite deployment has no statistics either)."""

from __future__ import annotations

import time
from collections.abc import Callable

PREFILL_USERS = 1000
CHUNK = 100_000
TABLES = (
    "auth_user",
    "oauth2_provider_idtoken",
    "oauth2_provider_accesstoken",
    "oauth2_provider_refreshtoken",
    "oidc_provider_ext_authorizationgrant",
)

# {u0} first synthetic user id - 1, {i0}/{a0}/{r0}/{g0} id offsets, {app} the client's id.
# n runs over the chunk; the user of token n is u0 + 1 + n % PREFILL_USERS.
_GRANT_COLUMNS = """id, code_checksum, redirect_uri, scope, code_challenge, code_challenge_method, nonce,
    claims, auth_time, acr, amr, sid, tenant, expires, created, redeemed, reuse_detected, token_family,
    access_token_id, application_id, user_id, op_session_id"""
_PG_AGO = "now() - n * interval '1 second'"
_PG = {
    "auth_user": """
        INSERT INTO auth_user (id, password, last_login, is_superuser, username, first_name, last_name,
                               email, is_staff, is_active, date_joined)
        SELECT {u0} + n, '!', NULL, false, 'prefill-' || ({u0} + n), '', '', '', false, true, now()
        FROM generate_series(%(start)s::bigint, %(stop)s::bigint) AS n""",
    "oauth2_provider_idtoken": """
        INSERT INTO oauth2_provider_idtoken
            (id, jti, expires, scope, created, updated, application_id, user_id)
        SELECT {i0} + n, md5('jti' || ({i0} + n))::uuid, {ago} + interval '1 hour',
               'openid offline_access', {ago}, {ago}, {app}, {u0} + 1 + mod(n, {users})
        FROM generate_series(%(start)s::bigint, %(stop)s::bigint) AS n""",
    "oauth2_provider_accesstoken": """
        INSERT INTO oauth2_provider_accesstoken (id, token, token_checksum, expires, scope, application_id,
            user_id, created, updated, source_refresh_token_id, id_token_id, resource)
        SELECT {a0} + n, 'prefill-' || md5('at' || ({a0} + n)),
               encode(sha256(('at' || ({a0} + n))::bytea), 'hex'),
               {ago} + interval '1 hour', 'openid offline_access', {app},
               {u0} + 1 + mod(n, {users}), {ago}, {ago}, NULL, {i0} + n, '[]'::jsonb
        FROM generate_series(%(start)s::bigint, %(stop)s::bigint) AS n""",
    "oauth2_provider_refreshtoken": """
        INSERT INTO oauth2_provider_refreshtoken (id, token, token_checksum, access_token_id, application_id,
            user_id, created, updated, revoked, token_family, resource)
        SELECT {r0} + n, 'prefill-' || md5('rt' || ({r0} + n)),
               encode(sha256(('rt' || ({r0} + n))::bytea), 'hex'),
               {a0} + n, {app}, {u0} + 1 + mod(n, {users}), {ago}, {ago}, NULL,
               md5('family' || ({r0} + n))::uuid, '[]'::jsonb
        FROM generate_series(%(start)s::bigint, %(stop)s::bigint) AS n""",
    "oidc_provider_ext_authorizationgrant": """
        INSERT INTO oidc_provider_ext_authorizationgrant ({grant_columns})
        SELECT {g0} + n, encode(sha256(('code' || ({g0} + n))::bytea), 'hex'),
               'http://127.0.0.1:8765/callback', 'openid offline_access', '', '', '', '{{}}'::jsonb,
               {ago}, '', '[]'::jsonb, '', '', {ago} + interval '1 minute', {ago}, {ago}, false,
               md5('family' || ({r0} + n))::uuid, {a0} + n, {app}, {u0} + 1 + mod(n, {users}), NULL
        FROM generate_series(%(start)s::bigint, %(stop)s::bigint) AS n""",
}

_SQLITE_SEQ = "WITH RECURSIVE seq(n) AS (SELECT :start UNION ALL SELECT n + 1 FROM seq WHERE n < :stop) "
_SQLITE_AGO = "strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || n || ' seconds')"
_SQLITE_IN_AN_HOUR = "strftime('%Y-%m-%d %H:%M:%f', 'now', '+3600 seconds', '-' || n || ' seconds')"
_SQLITE = {
    "auth_user": """
        INSERT INTO auth_user (id, password, last_login, is_superuser, username, first_name, last_name,
                               email, is_staff, is_active, date_joined)
        {seq} SELECT {u0} + n, '!', NULL, 0, 'prefill-' || ({u0} + n), '', '', '', 0, 1, {ago} FROM seq""",
    "oauth2_provider_idtoken": """
        INSERT INTO oauth2_provider_idtoken
            (id, jti, expires, scope, created, updated, application_id, user_id)
        {seq} SELECT {i0} + n, printf('%032x', {i0} + n), {in_an_hour}, 'openid offline_access',
               {ago}, {ago}, {app}, {u0} + 1 + n % {users} FROM seq""",
    "oauth2_provider_accesstoken": """
        INSERT INTO oauth2_provider_accesstoken (id, token, token_checksum, expires, scope, application_id,
            user_id, created, updated, source_refresh_token_id, id_token_id, resource)
        {seq} SELECT {a0} + n, 'prefill-at-' || ({a0} + n), lower(hex(randomblob(32))),
               {in_an_hour}, 'openid offline_access',
               {app}, {u0} + 1 + n % {users}, {ago}, {ago}, NULL, {i0} + n, '[]' FROM seq""",
    "oauth2_provider_refreshtoken": """
        INSERT INTO oauth2_provider_refreshtoken (id, token, token_checksum, access_token_id, application_id,
            user_id, created, updated, revoked, token_family, resource)
        {seq} SELECT {r0} + n, 'prefill-rt-' || ({r0} + n), lower(hex(randomblob(32))), {a0} + n, {app},
               {u0} + 1 + n % {users}, {ago}, {ago}, NULL, printf('%032x', {r0} + n), '[]' FROM seq""",
    "oidc_provider_ext_authorizationgrant": """
        INSERT INTO oidc_provider_ext_authorizationgrant ({grant_columns})
        {seq} SELECT {g0} + n, lower(hex(randomblob(32))), 'http://127.0.0.1:8765/callback',
               'openid offline_access', '', '', '', '{{}}', {ago}, '', '[]', '', '', {ago}, {ago}, {ago}, 0,
               printf('%032x', {r0} + n), {a0} + n, {app}, {u0} + 1 + n % {users}, NULL FROM seq""",
}


def _offsets(max_id: Callable[[str], int], client_id: Callable[[], int]) -> dict:
    return {
        "u0": max_id("auth_user"),
        "i0": max_id("oauth2_provider_idtoken"),
        "a0": max_id("oauth2_provider_accesstoken"),
        "r0": max_id("oauth2_provider_refreshtoken"),
        "g0": max_id("oidc_provider_ext_authorizationgrant"),
        "app": client_id(),
        "users": PREFILL_USERS,
    }


def _chunks(rows: int):
    for start in range(1, rows + 1, CHUNK):
        yield start, min(start + CHUNK - 1, rows)


def prefill_postgresql(database_url: str, rows: int, client_id: str, log=print) -> float:
    import psycopg

    started = time.monotonic()
    with psycopg.connect(database_url, autocommit=True) as conn:
        existing = {
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        }
        tables = [t for t in TABLES if t in existing]

        def max_id(table):
            if table not in existing:
                return 0
            return conn.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}").fetchone()[0]

        def app_id():
            return conn.execute(
                "SELECT id FROM oauth2_provider_application WHERE client_id = %s", [client_id]
            ).fetchone()[0]

        offsets = _offsets(max_id, app_id)
        for table in tables:
            sql = _PG[table].format(ago=_PG_AGO, grant_columns=_GRANT_COLUMNS, **offsets)
            total = PREFILL_USERS if table == "auth_user" else rows
            for start, stop in _chunks(total):
                with conn.transaction():
                    conn.execute(sql, {"start": start, "stop": stop})
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))"
            )
            log(f"    {table}: +{total} rows ({time.monotonic() - started:.0f} s)")
        conn.execute("ANALYZE " + ", ".join(tables))
    return time.monotonic() - started


def prefill_sqlite(path: str, rows: int, client_id: str, log=print) -> float:
    import sqlite3

    started = time.monotonic()
    conn = sqlite3.connect(path, timeout=60, isolation_level=None)
    try:
        existing = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        tables = [t for t in TABLES if t in existing]

        def max_id(table):
            if table not in existing:
                return 0
            return conn.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}").fetchone()[0]

        def app_id():
            return conn.execute(
                "SELECT id FROM oauth2_provider_application WHERE client_id = ?", [client_id]
            ).fetchone()[0]

        offsets = _offsets(max_id, app_id)
        for table in tables:
            sql = _SQLITE[table].format(
                seq=_SQLITE_SEQ,
                ago=_SQLITE_AGO,
                in_an_hour=_SQLITE_IN_AN_HOUR,
                grant_columns=_GRANT_COLUMNS,
                **offsets,
            )
            total = PREFILL_USERS if table == "auth_user" else rows
            for start, stop in _chunks(total):
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(sql, {"start": start, "stop": stop})
                conn.execute("COMMIT")
            log(f"    {table}: +{total} rows ({time.monotonic() - started:.0f} s)")
    finally:
        conn.close()
    return time.monotonic() - started
