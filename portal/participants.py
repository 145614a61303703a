"""Peppol participant identifiers (ISO 6523 ICD scheme and value) of brands and clients: which
schemes the portal knows, and each checked and written in its one compact form."""
from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _
from stdnum.be import vat as be_vat
from stdnum.exceptions import ValidationError as NumberInvalid
from stdnum.nl import btw as nl_vat


class Scheme(models.TextChoices):
    BE_ENTERPRISE = "0208", _("Belgian enterprise number (0208)")
    NL_KVK = "0106", _("Dutch KvK number (0106)")
    BE_VAT = "9925", _("Belgian VAT number (9925)")
    NL_VAT = "9944", _("Dutch VAT number (9944)")


_KVK = re.compile(r"^\d{8}$")


def normalise(scheme: str, value: str) -> str:
    """The identifier as the Peppol network knows it, or ValidationError saying what is wrong.
    0208 is the ten-digit enterprise number with its mod-97 check (python-stdnum's Belgian VAT
    check is the same number); 9925 and 9944 are VAT numbers with their country prefix; 0106 is
    the eight-digit KvK number (no check digit, which python-stdnum does not cover)."""
    value = (value or "").strip()
    try:
        if scheme == Scheme.BE_ENTERPRISE:
            number = be_vat.validate(value)  # compact: 10 digits, mod 97
            return number
        if scheme == Scheme.BE_VAT:
            return "BE" + be_vat.validate(value)
        if scheme == Scheme.NL_VAT:
            return "NL" + nl_vat.validate(value)
    except NumberInvalid:
        raise ValidationError(_invalid(scheme), code="invalid") from None
    if scheme == Scheme.NL_KVK:
        compact = re.sub(r"[\s.]", "", value)
        if not _KVK.match(compact):
            raise ValidationError(_invalid(scheme), code="invalid")
        return compact
    raise ValidationError(_("Choose a Peppol identifier scheme."), code="scheme")


def _invalid(scheme: str):
    return {
        Scheme.BE_ENTERPRISE: _("A Belgian enterprise number has 10 digits and a valid check "
                                "(like 0403.170.701)."),
        Scheme.BE_VAT: _("Use a Belgian VAT number like BE0403170701."),
        Scheme.NL_VAT: _("Use a Dutch VAT number like NL004495445B01."),
        Scheme.NL_KVK: _("A KvK number has 8 digits."),
    }[scheme]


def clean_participant(instance) -> None:
    """Model.clean() for a brand or client: scheme and identifier both set or both empty, and
    the identifier valid for its scheme (stored compact)."""
    scheme, value = instance.peppol_scheme, (instance.peppol_id or "").strip()
    if not scheme and not value:
        instance.peppol_id = ""
        return
    if not scheme:
        raise ValidationError({"peppol_scheme": _("Choose the scheme of this Peppol identifier.")})
    if not value:
        raise ValidationError({"peppol_id": _("Enter the Peppol identifier for this scheme.")})
    try:
        instance.peppol_id = normalise(scheme, value)
    except ValidationError as error:
        raise ValidationError({"peppol_id": error.messages}) from None


def participant(instance) -> str:
    """`<scheme>:<identifier>` as Peppol writes it, or "" when the company has none."""
    return f"{instance.peppol_scheme}:{instance.peppol_id}" if instance.peppol_scheme and instance.peppol_id else ""
