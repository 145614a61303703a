"""Files in S3-compatible object storage (S3_BUCKET set): a local S3 server (moto) holds them.
Stored PDFs are encrypted before they reach the bucket and read back decrypted through the
portal; logos never replace one another and reach pages and PDFs through the storage."""
import io
import uuid

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage, storages
from django.core.management import call_command
from django.urls import reverse
from PIL import Image
from pypdf import PdfReader

from invoices.models import RenderedDocument
from portal.crypto import generate_key
from portal.rls import staff_scope
from tests.fakes.s3 import s3_server
from tests.invoices.factories import make_invoice
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory


@pytest.fixture(scope="module")
def s3_endpoint():
    with s3_server() as server:
        yield server


@pytest.fixture
def bucket(s3_endpoint, settings):
    """A fresh bucket, and both storages in it as portal.settings sets them for S3_BUCKET."""
    name = f"portal-{uuid.uuid4().hex[:12]}"
    s3_endpoint.client().create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    options = s3_endpoint.storage_options(name)
    settings.STORAGES = {**settings.STORAGES,
                         "default": {"BACKEND": "storages.backends.s3.S3Storage",
                                     "OPTIONS": {**options, "location": "media", "file_overwrite": False}},
                         "encrypted": {"BACKEND": "portal.object_storage.EncryptedS3Storage",
                                       "OPTIONS": {**options, "location": "encrypted"}}}
    return name


def _objects(s3_endpoint, bucket) -> dict[str, bytes]:
    client = s3_endpoint.client()
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {item["Key"]: client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read() for item in listed}


def _png(size) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (31, 78, 121)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_an_invoice_pdf_is_stored_encrypted_in_the_bucket_and_downloads_decrypted(db, client, s3_endpoint, bucket):
    brand = BrandFactory(is_default=True, iban="NL91ABNA0417164300")
    mine = ClientFactory(brand=brand, name="Alpha B.V.", locale="en")
    user = MembershipFactory(client=mine, user__email="owner@alpha.test").user
    invoice = make_invoice(mine, number="INV-2026-00042")
    client.force_login(user)

    first = client.get(reverse("invoices:invoice_pdf", args=[invoice.pk]))
    assert first.status_code == 200 and first.content.startswith(b"%PDF")
    assert "INV-2026-00042" in PdfReader(io.BytesIO(first.content)).pages[0].extract_text()

    with staff_scope():
        stored = RenderedDocument.objects.get(invoice=invoice)
    objects = _objects(s3_endpoint, bucket)
    assert list(objects) == [f"encrypted/{stored.file_name}"]
    at_rest = objects[f"encrypted/{stored.file_name}"]
    assert not at_rest.startswith(b"%PDF") and b"INV-2026-00042" not in at_rest
    assert at_rest.startswith(b"pe1")  # a token of portal.crypto

    again = client.get(reverse("invoices:invoice_pdf", args=[invoice.pk]))  # from the bucket, decrypted
    assert again.status_code == 200 and again.content == first.content


def test_two_logos_with_the_same_file_name_both_survive_and_are_served(db, client, s3_endpoint, bucket):
    first, second = BrandFactory(is_default=True), BrandFactory()
    with staff_scope():
        first.logo.save("logo.png", ContentFile(_png((240, 80))))
        second.logo.save("logo.png", ContentFile(_png((120, 40))))
    assert first.logo.name != second.logo.name
    objects = _objects(s3_endpoint, bucket)
    assert objects[f"media/{first.logo.name}"] == _png((240, 80))
    assert objects[f"media/{second.logo.name}"] == _png((120, 40))

    page = client.get(reverse("account_login"))
    assert first.logo_url in page.content.decode()
    for brand, size in ((first, (240, 80)), (second, (120, 40))):
        response = client.get(brand.logo_url)
        assert response.status_code == 200 and response["Content-Type"] == "image/png"
        assert "immutable" in response["Cache-Control"]
        assert Image.open(io.BytesIO(response.content)).size == size
    # Another name under a brand's address, or a brand's address for a file not its logo: 404.
    assert client.get(reverse("portal:brand_logo", kwargs={"pk": first.pk, "name": second.logo.name})).status_code == 404


def test_the_pdf_takes_the_logo_from_the_bucket(db, s3_endpoint, bucket):
    from invoices.documents import render
    from invoices.models import Invoice

    brand = BrandFactory(is_default=True, iban="NL91ABNA0417164300")
    with staff_scope():
        brand.logo.save("acme.png", ContentFile(_png((240, 80))))
    invoice = make_invoice(ClientFactory(brand=brand))
    with staff_scope():
        pdf = render.document_pdf(Invoice.objects.select_related("client", "brand").get(pk=invoice.pk))
    sizes = [Image.open(io.BytesIO(image.data)).size for image in PdfReader(io.BytesIO(pdf.content)).pages[0].images]
    assert (240, 80) in sizes
    assert default_storage.exists(brand.logo.name)


def test_rotation_reencrypts_the_files_in_the_bucket(db, settings, s3_endpoint, bucket):
    old, new = generate_key("old"), generate_key("new")
    settings.ENCRYPTION_KEYS = old
    storage = storages["encrypted"]
    name = storage.save("rotation/statement.pdf", ContentFile(b"statement bytes"))
    settings.ENCRYPTION_KEYS = f"{new},{old}"
    call_command("reencrypt", stdout=io.StringIO())
    settings.ENCRYPTION_KEYS = new  # the old key is gone: the file must still read
    with storage.open(name) as handle:
        assert handle.read() == b"statement bytes"
    assert list(storage.all_names()) == [name]


def test_without_s3_the_logo_is_served_from_the_local_disk(db, client, settings, tmp_path):
    settings.STORAGES = {**settings.STORAGES, "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path / "media")}}}
    brand = BrandFactory(is_default=True)
    with staff_scope():
        brand.logo.save("logo.png", ContentFile(_png((240, 80))))
    assert (tmp_path / "media" / brand.logo.name).exists()
    response = client.get(brand.logo_url)
    assert response.status_code == 200 and Image.open(io.BytesIO(response.content)).size == (240, 80)
