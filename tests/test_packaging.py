"""The wheel a site pip-installs carries the templates, static files and migrations."""

import subprocess
import sys
import zipfile
from pathlib import Path

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
        "oidc_provider_ext/migrations/0001_initial.py",
        "oidc_provider_ext/py.typed",
    ]:
        assert expected in names, expected
    assert not any(name.startswith(("idp_project/", "tests/", "benchmarks/")) for name in names)
