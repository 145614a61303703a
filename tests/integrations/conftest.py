import pytest

from integrations.models import Connection
from integrations.signing import generate_secret
from portal.rls import staff_scope
from tests.portal.factories import BrandFactory


@pytest.fixture
def secret():
    return generate_secret()


@pytest.fixture
def connection(db, secret):
    with staff_scope():
        return Connection.objects.create(name="Custom ERP", slug="erp", brand=BrandFactory(is_default=True),
                                         signing_secrets=secret)
