"""`email_key` is required and unique: two spellings of one address are one account."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0005_user_email_key"),
    ]

    operations = [
        migrations.AlterField(
            model_name="user",
            name="email_key",
            field=models.CharField(editable=False, max_length=254, unique=True),
        ),
    ]
