"""The Dutch catalogue is whole and compiled: no entry of locale/nl/LC_MESSAGES/django.po is
empty or fuzzy, and the .mo the portal reads says what the .po says (a .po edited without
compiling it again shows up here, not as English on a Dutch page)."""
from pathlib import Path

import polib
import pytest
from django.utils import translation

PO = Path(__file__).resolve().parents[1] / "locale" / "nl" / "LC_MESSAGES" / "django.po"


@pytest.fixture(scope="module")
def catalogue():
    return [entry for entry in polib.pofile(str(PO)) if not entry.obsolete]


def _said(entry) -> list[str]:
    return list(entry.msgstr_plural.values()) if entry.msgid_plural else [entry.msgstr]


def test_no_entry_is_empty_or_fuzzy(catalogue):
    empty = [entry.msgid for entry in catalogue if not all(text.strip() for text in _said(entry))]
    fuzzy = [entry.msgid for entry in catalogue if entry.fuzzy]
    assert (empty, fuzzy) == ([], [])


def test_the_compiled_catalogue_says_what_the_po_says(catalogue):
    stale = []
    with translation.override("nl"):
        for entry in catalogue:
            if not all(_said(entry)) or entry.fuzzy:
                continue  # the test above names it
            if entry.msgid_plural:
                shown = translation.npgettext(entry.msgctxt, entry.msgid, entry.msgid_plural, 1) if entry.msgctxt \
                    else translation.ngettext(entry.msgid, entry.msgid_plural, 1)
                expected = entry.msgstr_plural[0]
            else:
                shown = translation.pgettext(entry.msgctxt, entry.msgid) if entry.msgctxt \
                    else translation.gettext(entry.msgid)
                expected = entry.msgstr
            if shown != expected:
                stale.append((entry.msgid, expected, shown))
    assert stale == [], "compile the catalogue again (msgfmt / compilemessages): the .mo is older than the .po"


def test_dutch_is_dutch():
    """A spot check of words the portal shows everywhere, and the two that must differ."""
    with translation.override("nl"):
        assert translation.gettext("Overdue") == "Achterstallig"
        assert translation.gettext("Void") == "Geannuleerd"
        assert translation.gettext("Invoices") == "Facturen"
