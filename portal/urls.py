"""URLs: the portal shell, accounts (allauth), admin, language switch."""
from django.contrib import admin
from django.urls import include, path

from portal import health, live_views, views

portal_patterns = [
    path("", views.home, name="home"),
    path("clients/choose/", views.choose_client, name="choose_client"),
    path("clients/switch/", views.switch_client, name="switch_client"),
    path("clients/<int:pk>/", views.client_detail, name="client_detail"),
    path("notifications/", views.notifications, name="notifications"),
    path("notifications/<int:pk>/", views.notification_open, name="notification_open"),
    path("notifications/read-all/", views.notifications_read_all, name="notifications_read_all"),
    path("notifications/settings/", views.notification_preferences, name="notification_preferences"),
    path("language/", views.set_language, name="set_language"),
    path("live/", live_views.live_poll, name="live"),
    path("brand/<int:pk>/logo/<path:name>", views.brand_logo, name="brand_logo"),
]

urlpatterns = [
    path("", include((portal_patterns, "portal"))),
    path("", include("integrations.urls")),
    path("", include("invoices.urls")),
    path("", include("payments.urls")),
    path("accounts/", include("allauth.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/health/", health.health, name="health"),
    path("admin/", admin.site.urls),
]
