import os

from django.core.wsgi import get_wsgi_application

from agencybilling.startup import check_database, run_or_exit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agencybilling.settings.production")


def _load():
    app = get_wsgi_application()
    check_database()
    return app


application = run_or_exit(_load)
