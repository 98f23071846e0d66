from django.apps import AppConfig


class WebConfig(AppConfig):
    """The server-rendered pages: agency dashboard, client portal, billing-support console. No models."""

    name = "web"
    default_auto_field = "django.db.models.BigAutoField"
