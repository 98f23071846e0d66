"""Abstract base models."""

from __future__ import annotations

import uuid

from django.db import models


class BaseModel(models.Model):
    """Timestamps, plus a public UUID used in URLs and the API.

    Integer ids come from per-schema sequences, so two agencies have rows with the same id;
    URLs carry `public_id` so an id from one agency never names an object in another.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
