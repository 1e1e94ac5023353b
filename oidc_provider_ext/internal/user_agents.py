"""A user agent as people name it ("Firefox on Linux") for the sessions page. Private.

Parsing uses ua-parser (the maintained port of the uap-core rules that browsers' own vendors
update); a raw User-Agent string is unreadable to most users and can be anything a client sends.
"""

from __future__ import annotations

from functools import lru_cache

import ua_parser
from django.utils.translation import gettext


@lru_cache(maxsize=1024)
def _parse(user_agent: str) -> tuple[str, str]:
    result = ua_parser.parse(user_agent)
    browser = result.user_agent.family if result.user_agent is not None else ""
    system = result.os.family if result.os is not None else ""
    return ("" if browser == "Other" else browser), ("" if system == "Other" else system)


def describe(user_agent: str) -> str:
    """ "Firefox on Linux", "Safari", "Windows", or "Unknown browser"; never the raw string."""
    browser, system = _parse(user_agent[:512]) if user_agent else ("", "")
    if browser and system:
        return gettext("%(browser)s on %(system)s") % {"browser": browser, "system": system}
    return browser or system or gettext("Unknown browser")
