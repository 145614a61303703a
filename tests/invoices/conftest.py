import pytest

from tests.portal.factories import BrandFactory, ClientFactory


@pytest.fixture
def client_a(db):
    return ClientFactory(brand=BrandFactory(is_default=True), name="Alpha B.V.")


@pytest.fixture
def client_b(client_a):
    return ClientFactory(brand=client_a.brand, name="Bravo B.V.")
