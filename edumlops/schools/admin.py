from django.contrib import admin

from edumlops.schools.models import CalendarPeriod, District, Membership, School


class CalendarPeriodInline(admin.TabularInline):
    model = CalendarPeriod
    extra = 1


@admin.register(District)
class DistrictAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "teachers_may_roll_back"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [CalendarPeriodInline]


@admin.register(CalendarPeriod)
class CalendarPeriodAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "district", "start", "end"]
    list_filter = ["district", "kind"]


@admin.register(School)
class SchoolAdmin(admin.ModelAdmin):
    list_display = ["name", "district", "size_band", "locality", "connectivity", "hardware"]
    list_filter = ["district", "size_band", "locality", "connectivity", "hardware"]
    search_fields = ["name", "code"]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "role", "school", "district"]
    list_filter = ["role", "district"]
    search_fields = ["user__username", "user__email"]
    autocomplete_fields = ["school"]
