"""The wheel a site pip-installs (`make dist` -> dist/oidc_provider_ext-*.whl) carries everything the
app ships: templates, static files, compiled translations, migrations, py.typed, the LICENSE; none of
the example project."""

import email
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from oidc_provider_ext.conf import SHIPPED_LANGUAGES

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    dist = tmp_path_factory.mktemp("dist")
    # README's recipe, with this interpreter's environment instead of make's own .venv.
    subprocess.run(
        ["make", "--no-print-directory", "dist", f"BIN={Path(sys.executable).parent}", f"DIST={dist}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (path,) = dist.glob("oidc_provider_ext-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_contains_templates_static_and_migrations(wheel):
    names = set(wheel.namelist())
    for expected in [
        "oidc_provider_ext/templates/oidc_provider_ext/base.html",
        "oidc_provider_ext/templates/oidc_provider_ext/consent.html",
        "oidc_provider_ext/templates/oidc_provider_ext/login.html",
        "oidc_provider_ext/templates/admin/oidc_provider_ext/client_secret.html",
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


def test_wheel_ships_every_file_of_the_app(wheel):
    """Whatever is added later (a template, a migration, a translation catalogue) is in the wheel."""
    tracked = subprocess.run(
        ["git", "ls-files", "oidc_provider_ext"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split()
    untracked_app_files = {
        str(p.relative_to(ROOT))
        for p in (ROOT / "oidc_provider_ext").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    missing = sorted((set(tracked) | untracked_app_files) - set(wheel.namelist()))
    assert not missing, missing


def test_wheel_carries_the_license(wheel):
    """Issue 14.1: pyproject declared BSD-3-Clause, but neither the repository nor the wheel had it."""
    (license_file,) = [n for n in wheel.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
    assert wheel.read(license_file) == (ROOT / "LICENSE").read_bytes()
    assert b"BSD 3-Clause License" in wheel.read(license_file)
    (metadata,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    headers = email.message_from_bytes(wheel.read(metadata))
    assert headers["License-Expression"] == "BSD-3-Clause"
    assert headers.get_all("License-File") == ["LICENSE"]


def test_readme_installs_from_a_checkout_or_the_wheel():
    """Issue 14.1: the package is not on PyPI; README's install must be one that works."""
    readme = (ROOT / "README.md").read_text()
    install = readme[readme.index("## Install into your existing Django site") :]
    install = install[: install.index("```python")]
    assert "pip install oidc-provider-ext\n" not in install
    assert "pip install dist/oidc_provider_ext-*.whl" in install
    assert "make dist" in install
