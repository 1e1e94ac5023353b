"""Stock django-oauth-toolkit with its default settings: the baseline benchmarks/run.py compares
``idp_project`` against. Only what DOT's OIDC tutorial asks for is configured; see settings.py."""
