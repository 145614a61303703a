"""Factories for tenancy rows. Rows are created in the staff scope, as the back office would."""
import factory
from allauth.account.models import EmailAddress
from factory.django import DjangoModelFactory

from portal.models import Brand, Client, Membership, User
from portal.rls import staff_scope

PASSWORD = "correct horse battery staple"


class ScopedFactory(DjangoModelFactory):
    class Meta:
        abstract = True

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        with staff_scope():
            return super()._create(model_class, *args, **kwargs)


class BrandFactory(ScopedFactory):
    class Meta:
        model = Brand

    name = factory.Sequence(lambda n: f"Brand {n} B.V.")
    slug = factory.Sequence(lambda n: f"brand-{n}")
    support_email = factory.Sequence(lambda n: f"support{n}@brand.test")
    legal_footer = factory.LazyAttribute(lambda b: f"{b.name} · KvK 12345678")


class ClientFactory(ScopedFactory):
    class Meta:
        model = Client

    brand = factory.SubFactory(BrandFactory)
    name = factory.Sequence(lambda n: f"Client {n} B.V.")
    kvk_number = factory.Sequence(lambda n: f"{10000000 + n}")
    vat_number = factory.Sequence(lambda n: f"NL{100000000 + n}B01")
    billing_email = factory.Sequence(lambda n: f"billing{n}@client.test")


class UserFactory(ScopedFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@client.test")
    first_name = "Test"
    last_name = factory.Sequence(lambda n: f"User {n}")

    @factory.post_generation
    def password(user, create, extracted, **kwargs):
        user.set_password(extracted or PASSWORD)
        if create:
            with staff_scope():
                user.save(update_fields=["password"])

    @factory.post_generation
    def verified(user, create, extracted, **kwargs):
        if create and extracted is not False:
            with staff_scope():
                EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)


class MembershipFactory(ScopedFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    client = factory.SubFactory(ClientFactory)
    role = Membership.Role.OWNER
