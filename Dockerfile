# The production image: web (gunicorn), worker and beat all run from it.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DJANGO_ENV=production PORTAL_VAR_DIR=/app/var
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 \
      fonts-dejavu-core gettext \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1000 portal
WORKDIR /app
COPY pyproject.toml ./
COPY portal/ portal/
COPY invoices/ invoices/
COPY payments/ payments/
COPY reminders/ reminders/
COPY integrations/ integrations/
RUN pip install --no-cache-dir .
COPY . .
RUN DJANGO_ENV=development DATABASE_URL=postgres://build@localhost/build REDIS_URL=redis://localhost:6379/0 \
      python manage.py collectstatic --no-input \
 && mkdir -p var && chown -R portal:portal var
USER portal
EXPOSE 8000
# Runs as the application role only: the owner's and the superuser's credentials reach the
# `migrate` service alone (docker-compose.yml), and .env / .env.setup are never copied in.
CMD ["gunicorn", "portal.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--threads", "4", \
     "--access-logfile", "-"]
