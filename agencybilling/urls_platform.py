"""URLs on the platform domain (`BASE_DOMAIN`): the billing-support console."""

from django.contrib.auth import views as auth_views
from django.urls import path

from agencybilling import views
from billing.webhooks import stripe_webhook
from tenants import views as tenant_views

urlpatterns = [
    path("", tenant_views.console_home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("login/", auth_views.LoginView.as_view(template_name="registration/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("webhooks/stripe", stripe_webhook, name="stripe-webhook"),
]
