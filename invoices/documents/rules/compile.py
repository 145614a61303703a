"""Turns an ISO Schematron file (queryBinding xslt2) into an XSLT 3.0 stylesheet that writes SVRL.

Our own compiler, for the subset of ISO Schematron that the official e-invoicing rules use (checked
against OpenPeppol's PEPPOL-EN16931-UBL.sch and CEN's preprocessed EN 16931 files): `ns`, `let` on
the schema, a pattern or a rule, `pattern`, `rule` (context, flag), `assert` and `report` (id, flag,
test, text with `value-of`/`name`), and XSLT functions embedded in the schema. Anything else
(`include`, abstract patterns, `extends`, phases other than all patterns) is refused loudly, so a
Peppol release that starts to need it fails at compile time, not silently at validation time.

Semantics kept from ISO Schematron: within a pattern, a node is checked by the first rule (in
document order) whose context matches it; every pattern sees every node. A schema or pattern `let`
is evaluated with the document as context (a global variable; rule contexts may use it), a rule
`let` with the rule's context node.

Checked against the publishers' own tests: on CEN's preprocessed EN 16931 UBL .sch its output
fires exactly what CEN's precompiled XSLT fires on all 1,131 documents of CEN's unit tests, and
OpenPeppol's unit tests of the release hold (tests/invoices/test_rules.py).

Run it by hand to inspect the stylesheet of a rules file:
    python -m invoices.documents.rules.compile PEPPOL-EN16931-UBL.sch > peppol.xslt
"""
from __future__ import annotations

import sys
from pathlib import Path

from lxml import etree

SCH = "http://purl.oclc.org/dsdl/schematron"
XSL = "http://www.w3.org/1999/XSL/Transform"
SVRL = "http://purl.oclc.org/dsdl/svrl"
LOCAL = "urn:portal:schematron-compiler"  # our own helper function's namespace

_SUPPORTED_IN_SCHEMA = {"title", "ns", "let", "phase", "pattern", "p", "diagnostics"}


class SchematronUnsupported(ValueError):
    """The Schematron file uses a construct this compiler does not implement."""


def _sch(tag: str) -> str:
    return f"{{{SCH}}}{tag}"


def _xsl(parent: etree._Element, tag: str, **attrs: str) -> etree._Element:
    return etree.SubElement(parent, f"{{{XSL}}}{tag}", {k.replace("_", "-"): v for k, v in attrs.items()})


def _message(target: etree._Element, node: etree._Element) -> None:
    """Copy an assert's text into svrl:text, evaluating its value-of and name children."""
    text = etree.SubElement(target, f"{{{SVRL}}}text")
    last = None

    def add_text(value: str | None) -> None:
        if not value:
            return
        if last is None:
            text.text = (text.text or "") + value
        else:
            last.tail = (last.tail or "") + value

    add_text(node.text)
    for child in node:
        if not isinstance(child.tag, str):  # comments inside a message
            add_text(child.tail)
            continue
        if child.tag == _sch("value-of"):
            last = _xsl(text, "value-of", select=child.get("select"))
        elif child.tag == _sch("name"):
            last = _xsl(text, "value-of", select=f"name({child.get('path', '.')})")
        else:
            add_text(child.xpath("string()"))
            add_text(child.tail)
            continue
        add_text(child.tail)


def compile_schematron(sch: bytes | str | Path) -> bytes:
    """The XSLT 3.0 text that checks a document against the Schematron and returns SVRL."""
    tree = etree.parse(str(sch)) if isinstance(sch, (str, Path)) else etree.ElementTree(etree.fromstring(sch))
    schema = tree.getroot()
    if schema.tag != _sch("schema"):
        raise SchematronUnsupported("not an ISO Schematron schema")
    if schema.get("queryBinding", "xslt2") not in ("xslt2", "xslt3"):
        raise SchematronUnsupported(f"queryBinding {schema.get('queryBinding')!r}")

    namespaces = {ns.get("prefix"): ns.get("uri") for ns in schema.findall(_sch("ns"))}
    nsmap = {"xsl": XSL, "svrl": SVRL, "local": LOCAL, "xs": "http://www.w3.org/2001/XMLSchema", **namespaces}
    stylesheet = etree.Element(f"{{{XSL}}}stylesheet", nsmap=nsmap, attrib={
        "version": "3.0", "exclude-result-prefixes": " ".join(p for p in nsmap if p not in ("svrl",)),
    })
    _xsl(stylesheet, "output", method="xml", indent="no")

    # The failing node's XPath, with the document's own prefixes, for staff to find it.
    path = _xsl(stylesheet, "function", name="local:path", **{"as": "xs:string"})
    _xsl(path, "param", name="node", **{"as": "node()"})
    _xsl(path, "sequence", select=(
        "concat(string-join(for $a in $node/ancestor-or-self::* return "
        "concat('/', name($a), '[', count($a/preceding-sibling::*[node-name(.) = node-name($a)]) + 1, ']'), ''),"
        " if ($node instance of attribute()) then concat('/@', name($node)) else '')"
    ))

    global_lets: dict[str, str] = {}

    def declare_global(let: etree._Element) -> None:
        name, value = let.get("name"), let.get("value")
        if value is None:
            raise SchematronUnsupported(f"let {name!r} without a value attribute")
        if name in global_lets:
            if global_lets[name] != value:
                raise SchematronUnsupported(f"let {name!r} is defined twice with different values")
            return
        global_lets[name] = value
        _xsl(stylesheet, "variable", name=name, select=value)

    patterns = []
    for child in schema:
        if not isinstance(child.tag, str):
            continue
        if child.tag.startswith(f"{{{XSL}}}"):
            stylesheet.append(etree.fromstring(etree.tostring(child)))  # an embedded xsl:function
            continue
        local = etree.QName(child).localname
        if etree.QName(child).namespace != SCH or local not in _SUPPORTED_IN_SCHEMA:
            raise SchematronUnsupported(f"<{local}> in the schema")
        if local == "let":
            declare_global(child)
        elif local == "pattern":
            if child.get("abstract") == "true" or child.get("is-a"):
                raise SchematronUnsupported("abstract patterns (use the preprocessed file)")
            patterns.append(child)

    for pattern in patterns:  # pattern lets are evaluated on the document, like schema lets
        for let in pattern.findall(_sch("let")):
            declare_global(let)

    root = _xsl(stylesheet, "template", match="/")
    output = etree.SubElement(root, f"{{{SVRL}}}schematron-output")
    output.set("title", schema.findtext(_sch("title")) or "")
    for number, pattern in enumerate(patterns):
        mode = f"local:pattern{number}"
        etree.SubElement(output, f"{{{SVRL}}}active-pattern", id=pattern.get("id") or f"pattern{number}")
        _xsl(output, "apply-templates", select="//(*|@*)", mode=mode)
        _xsl(stylesheet, "mode", name=mode, on_no_match="deep-skip")
        rules = pattern.findall(_sch("rule"))
        for index, rule in enumerate(rules):
            if rule.get("abstract") == "true" or rule.find(_sch("extends")) is not None:
                raise SchematronUnsupported("abstract rules")
            template = _xsl(stylesheet, "template", match=rule.get("context"), mode=mode,
                            priority=str(len(rules) - index))
            for check in rule:
                if not isinstance(check.tag, str):
                    continue
                kind = etree.QName(check).localname
                if kind == "let":
                    _xsl(template, "variable", name=check.get("name"), select=check.get("value"))
                    continue
                if kind not in ("assert", "report"):
                    raise SchematronUnsupported(f"<{kind}> in a rule")
                test = check.get("test")
                condition = f"not({test})" if kind == "assert" else f"({test})"
                branch = _xsl(template, "if", test=condition)
                tag = "failed-assert" if kind == "assert" else "successful-report"
                result = etree.SubElement(branch, f"{{{SVRL}}}{tag}")
                for attr in ("id", "role"):
                    if check.get(attr):
                        result.set(attr, check.get(attr))
                result.set("flag", check.get("flag") or rule.get("flag") or "fatal")
                result.set("test", test.replace("{", "{{").replace("}", "}}"))
                _xsl(result, "attribute", name="location", select="local:path(.)")
                _message(result, check)
    return etree.tostring(stylesheet, xml_declaration=True, encoding="UTF-8")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    sys.stdout.buffer.write(compile_schematron(Path(argv[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
