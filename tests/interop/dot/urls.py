"""DOT mounted under ``/o/`` as its tutorial does, Django's own login view, and RFC 8414 metadata at the
root (DOT's docs: prefixed deployments mount ``metadata_urlpatterns`` at the server root too)."""

from django.contrib.auth import views as auth_views
from django.urls import include, path
from oauth2_provider import urls as oauth2_urls

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("o/", include(oauth2_urls)),
    path("", include((oauth2_urls.metadata_urlpatterns, "oauth2_metadata"))),
]
