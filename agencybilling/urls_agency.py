"""URLs on an agency's domain (`<slug>.<BASE_DOMAIN>`)."""

from django.contrib.auth import views as auth_views
from django.urls import path

from agencybilling import views
from clients import views as client_views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("login/", auth_views.LoginView.as_view(template_name="registration/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("clients/", client_views.client_list, name="client-list"),
    path("clients/<uuid:public_id>/", client_views.client_detail, name="client-detail"),
]
