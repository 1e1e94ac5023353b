"""The Django and Python versions the app supports are the ones it declares and CI tests: Django 5.2
LTS on Python 3.11-3.13, Django 6.0 and 6.1 on Python 3.12-3.13 (Django 6 needs 3.12)."""

import configparser
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
SUPPORTED = {"5.2": ("3.11", "3.12", "3.13"), "6.0": ("3.12", "3.13"), "6.1": ("3.12", "3.13")}


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_install_requirement_admits_every_supported_django():
    (django,) = [Requirement(r) for r in _project()["dependencies"] if Requirement(r).name == "Django"]
    for release in ("5.2.19", "6.0.10", "6.1.3"):
        assert django.specifier.contains(release), f"pip refuses Django {release}: {django}"
    for release in ("5.1.15", "6.2"):
        assert not django.specifier.contains(release), f"Django {release} is not tested: {django}"


def test_classifiers_name_every_supported_django_and_python():
    classifiers = set(_project()["classifiers"])
    for django, pythons in SUPPORTED.items():
        assert f"Framework :: Django :: {django}" in classifiers
        for python in pythons:
            assert f"Programming Language :: Python :: {python}" in classifiers


def test_tox_matrix_covers_every_supported_pair():
    tox = configparser.ConfigParser()
    tox.read(ROOT / "tox.ini")
    spec = tox["tox"]["envlist"]
    envs: set[str] = set()
    for item in spec.split():
        # expand py{312,313}-django{52,60,61}
        parts = [p.split(",") for p in re.findall(r"\{([^}]*)\}", item)]
        template = re.sub(r"\{[^}]*\}", "{}", item)
        combos = [[]]
        for options in parts:
            combos = [c + [o] for c in combos for o in options]
        envs |= {template.format(*combo) for combo in combos}
    for django, pythons in SUPPORTED.items():
        for python in pythons:
            assert f"py{python.replace('.', '')}-django{django.replace('.', '')}" in envs
    assert "py311-django60" not in envs and "py311-django61" not in envs, "Django 6 needs Python 3.12"
