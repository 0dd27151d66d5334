from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from edumlops.core import views as core_views
from edumlops.schools import api as schools_api

urlpatterns = [
    path("", core_views.home, name="home"),
    path("healthz", core_views.healthz, name="healthz"),
    path("districts/<int:pk>/", core_views.district_dashboard, name="district"),
    path("schools/<int:pk>/", core_views.school_dashboard, name="school"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/me/", schools_api.me, name="api-me"),
    path("api/districts/", schools_api.district_list, name="api-districts"),
    path("api/districts/<int:pk>/", schools_api.district_detail, name="api-district"),
    path("api/schools/", schools_api.school_list, name="api-schools"),
    path("api/schools/<int:pk>/", schools_api.school_detail, name="api-school"),
    path("api/", include("workflows.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
