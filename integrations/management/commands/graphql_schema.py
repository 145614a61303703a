"""Write the GraphQL API's schema as SDL to docs/graphql/schema.graphql (tests check it matches)."""
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from integrations.erp.api import schema_sdl

PATH = Path(settings.BASE_DIR) / "docs" / "graphql" / "schema.graphql"


class Command(BaseCommand):
    help = "Write the GraphQL API's schema (SDL) to docs/graphql/schema.graphql."

    def handle(self, *args, **options):
        PATH.parent.mkdir(parents=True, exist_ok=True)
        PATH.write_text(schema_sdl())
        self.stdout.write(f"wrote {PATH.relative_to(settings.BASE_DIR)}")
