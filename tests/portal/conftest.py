from dataclasses import dataclass

import pytest

from portal.models import Client, User
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory


@dataclass
class Tenants:
    client_a: Client
    client_b: Client
    owner_a: User      # member of A only
    outsider: User     # member of B only
    member_of_both: User


@pytest.fixture
def tenants(db) -> Tenants:
    brand = BrandFactory(is_default=True)
    client_a = ClientFactory(brand=brand, name="Alpha B.V.")
    client_b = ClientFactory(brand=brand, name="Bravo B.V.")
    owner_a = MembershipFactory(client=client_a, user__email="owner@alpha.test").user
    outsider = MembershipFactory(client=client_b, user__email="someone@bravo.test").user
    member_of_both = MembershipFactory(client=client_a, user__email="both@alpha.test").user
    MembershipFactory(client=client_b, user=member_of_both)
    return Tenants(client_a, client_b, owner_a, outsider, member_of_both)
