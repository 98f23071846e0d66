"""Users get `email_key`, their email in the form it is compared in (core.identifiers.identifier_key), filled
here; made unique by the next migration (its own transaction, after the rows are written)."""

import unicodedata

from django.db import migrations, models


def _key(value):
    # Frozen copy of core.identifiers.identifier_key at this migration (migrations never import live code).
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value).casefold()).strip()


def fill(apps, schema_editor):
    User = apps.get_model("accounts", "User")
    seen = set()
    for user in User.objects.order_by("id"):
        key = _key(user.email or "")
        if key in seen:
            # Two accounts whose addresses differ only in case or Unicode form (possible before this migration):
            # the older keeps the address; the newer can no longer be signed in to until an Administrator fixes it.
            key = f"{key}#duplicate-{user.id}"
        seen.add(key)
        User.objects.filter(pk=user.pk).update(email_key=key)


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0004_invitation"),
    ]

    operations = [
        migrations.AddField(
            model_name="user",
            name="email_key",
            field=models.CharField(editable=False, max_length=254, null=True),
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
    ]
