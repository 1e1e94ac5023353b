from django.contrib import admin

from .models import Profile


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin):
    list_display = ("user", "phone_number", "phone_number_verified", "locality", "country")
    search_fields = ("user__username", "phone_number", "locality")
    raw_id_fields = ("user",)
