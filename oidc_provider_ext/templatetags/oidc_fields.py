"""``{{ field|oidc_field }}``: ``{{ field|as_crispy_field }}`` (crispy-forms, bootstrap5 pack) for
the sign-in page, with its common case written out.

Rendering crispy's field template costs ~1 ms of CPU per field (its template has ~40 tags, most of
them for other widgets); the sign-in page renders two on every visit. For a text or password input
with a label, no errors and no help text under the default layout, this writes exactly the HTML
crispy's template gives (tests/test_pages.py compares the two, byte for byte); for anything else it
is ``as_crispy_field``.
"""

from __future__ import annotations

from crispy_forms.templatetags.crispy_forms_filters import as_crispy_field
from django import forms, template
from django.conf import settings
from django.forms.boundfield import BoundField
from django.utils.html import conditional_escape
from django.utils.safestring import mark_safe

register = template.Library()

# crispy-bootstrap5's field.html, as it renders such a field (whitespace included).
_FIELD = (
    '\n\n\n    \n    <div id="div_{auto_id}" class="mb-3">\n        \n            \n            <label\n'
    '                for="{id_for_label}" class="form-label{required_class}">\n'
    "                {label}{asterisk}\n            </label>\n        \n\n        \n\n        \n"
    "            \n                \n                    \n                        {widget}\n"
    "                    \n                    \n                        \n\n\n    \n\n\n\n\n    \n\n\n\n"
    "                    \n                \n            \n        \n        \n    </div>\n    \n\n"
)
_ASTERISK = '<span class="asteriskField">*</span>'
_WIDGETS = (forms.TextInput, forms.PasswordInput)
_DEFAULT_LAYOUT = {
    "form_class": "",
    "label_class": "",
    "field_class": "",
    "field_template": None,
    "form_show_labels": True,
    "form_show_errors": True,
    "help_text_inline": False,
    "error_text_inline": True,
    "wrapper_class": "",
    "tag": None,
}


def _plain(field) -> bool:
    """Whether crispy's template renders ``field`` as :data:`_FIELD` does."""
    if not isinstance(field, BoundField) or type(field.field.widget) not in _WIDGETS:
        return False
    if getattr(settings, "CRISPY_TEMPLATE_PACK", None) != "bootstrap5" or getattr(
        settings, "CRISPY_CLASS_CONVERTERS", None
    ):
        return False
    helper = getattr(field.form, "helper", None)  # without one crispy's layout differs (whitespace)
    if helper is None or any(
        getattr(helper, name, value) != value for name, value in _DEFAULT_LAYOUT.items()
    ):
        return False
    if getattr(helper, "template_pack", "bootstrap5") != "bootstrap5":
        return False
    return bool(
        field.label
        and field.auto_id
        and field.id_for_label
        and not field.is_hidden
        and not field.help_text
        and not field.errors
        and not field.css_classes()
    )


@register.filter
def oidc_field(field):
    if not _plain(field):
        return as_crispy_field(field)
    widget = field.field.widget
    # What crispy's {% crispy_field field 'class' 'form-control' %} does to the widget first.
    class_name = type(widget).__name__.lower()
    css_class = widget.attrs.get("class", "")
    if css_class:
        if css_class.find(class_name) == -1:
            css_class += f" {class_name}"
    else:
        css_class = class_name
    if "form-control" not in css_class.split():
        css_class += " form-control"
    widget.attrs["class"] = css_class
    required = field.field.required
    return mark_safe(  # every value is escaped here or is the widget's own safe HTML
        _FIELD.format(
            auto_id=conditional_escape(field.auto_id),
            id_for_label=conditional_escape(field.id_for_label),
            required_class=" requiredField" if required else "",
            label=conditional_escape(field.label),
            asterisk=_ASTERISK if required else "",
            widget=str(field),
        )
    )
