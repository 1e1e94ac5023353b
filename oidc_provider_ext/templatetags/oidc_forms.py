"""``{{ field|crispy_field }}``: crispy-forms' ``as_crispy_field``, rendered once per process for an
empty field of an unbound form (the sign-in page's GET) and served from memory after that.

crispy-forms' bootstrap5 field template is about half of the sign-in page's CPU (~1 ms of ~2.3 ms
per page, docs/performance.md); its output for a field with no value and no errors depends only on
what the key below holds, so it is the same string every time. A field with a value (a
``login_hint``), errors, or a bound form is rendered by crispy as usual. The page's HTML is
crispy's, byte for byte (tests/test_pages.py); a different form class, language, label, help text,
widget or widget attribute is another key (at most ``_MAX_ENTRIES`` are kept, then crispy renders)."""

from __future__ import annotations

from typing import Any

from crispy_forms.templatetags.crispy_forms_filters import as_crispy_field
from django import template
from django.forms.boundfield import BoundField
from django.utils.translation import get_language

register = template.Library()

_MAX_ENTRIES = 256
_rendered: dict[tuple, Any] = {}


def _key(field: BoundField) -> tuple | None:
    form, widget = field.form, field.field.widget
    if form.is_bound or field.errors or field.value() not in (None, ""):
        return None
    helper = getattr(form, "helper", None)
    try:
        attrs = tuple(sorted(widget.attrs.items()))
        hash(attrs)
    except TypeError:  # an attribute value that is not hashable: render it each time
        return None
    return (
        type(form),
        type(widget),
        field.html_name,
        field.auto_id,
        get_language(),
        str(field.label),
        str(field.help_text),
        field.field.required,
        field.field.disabled,
        attrs,
        getattr(helper, "field_template", None),
        getattr(helper, "form_show_labels", None),
    )


@register.filter
def crispy_field(field: BoundField):
    key = _key(field)
    if key is None:
        return as_crispy_field(field)
    html = _rendered.get(key)
    if html is None:
        html = as_crispy_field(field)
        if len(_rendered) < _MAX_ENTRIES:
            _rendered[key] = html
    return html
