"""The agency's clients (agency schema)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from core.models import BaseModel


class Client(BaseModel):
    name = models.CharField(max_length=200)
    email = models.EmailField()
    salesperson = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="clients")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
