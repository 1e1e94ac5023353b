from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from oidc_provider_ext.admin import reset_second_factors

from .models import Profile


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin):
    list_display = ("user", "phone_number", "phone_number_verified", "locality", "country")
    search_fields = ("user__username", "phone_number", "locality")
    raw_id_fields = ("user",)


# The site's user admin with the provider's "reset second factors" action (docs/mfa.md).
User = get_user_model()


class UserAdmin(BaseUserAdmin):
    actions = [reset_second_factors]


if admin.site.is_registered(User):
    admin.site.unregister(User)
admin.site.register(User, UserAdmin)
