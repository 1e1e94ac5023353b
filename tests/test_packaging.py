"""The wheel a site pip-installs carries the templates, static files, compiled translations and
migrations."""

import subprocess
import sys
import zipfile
from pathlib import Path

from oidc_provider_ext.conf import SHIPPED_LANGUAGES

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_contains_templates_static_and_migrations(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("oidc_provider_ext-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in [
        "oidc_provider_ext/templates/oidc_provider_ext/base.html",
        "oidc_provider_ext/templates/oidc_provider_ext/consent.html",
        "oidc_provider_ext/templates/oidc_provider_ext/login.html",
        "oidc_provider_ext/static/oidc_provider_ext/bootstrap.min.css",
        "oidc_provider_ext/static/oidc_provider_ext/bootstrap.rtl.min.css",
        "oidc_provider_ext/templates/oidc_provider_ext/password_reset_email.txt",
        "oidc_provider_ext/migrations/0001_initial.py",
        "oidc_provider_ext/py.typed",
    ]:
        assert expected in names, expected
    # Compiled catalogues, so a site needs no gettext (DOT 3.4.1's wheel ships none).
    for language in [code for code in SHIPPED_LANGUAGES if code != "en"]:
        for suffix in ("mo", "po"):
            path = f"oidc_provider_ext/locale/{language}/LC_MESSAGES/django.{suffix}"
            assert path in names, path
    assert not any(name.startswith(("idp_project/", "tests/", "benchmarks/")) for name in names)
