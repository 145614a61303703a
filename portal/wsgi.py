"""WSGI entry point for gunicorn."""
import os
import time

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
application = get_wsgi_application()


def warm() -> float:
    """What the first requests of a process would otherwise do while clients wait (seconds of it
    on a loaded machine, bench/README.md "200 concurrent clients"): import every view through
    the URLconf, compile the project's templates into the cached loader, load each language's
    translations. Touches neither the database nor Redis, so gunicorn's --preload stays safe (a
    connection opened before the fork would be shared by the workers). Returns the seconds taken."""
    from django.conf import settings
    from django.template import TemplateDoesNotExist, TemplateSyntaxError
    from django.template.loader import get_template
    from django.urls import get_resolver
    from django.utils import translation

    started = time.perf_counter()
    for language, _name in settings.LANGUAGES:
        with translation.override(language):
            translation.gettext("Invoices")  # this language's catalogues
            get_resolver().reverse_dict  # the URLconf and every view module; reverse()'s table per language
    for folder in settings.TEMPLATES[0]["DIRS"]:
        for path in sorted(folder.rglob("*.html")):
            try:
                get_template(str(path.relative_to(folder)))
            except (TemplateDoesNotExist, TemplateSyntaxError):  # a fragment not meant to stand alone
                continue
    return time.perf_counter() - started


warm()
