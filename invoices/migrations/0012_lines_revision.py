"""A revision of each invoice's and credit note's lines, kept by the database, so a PDF download
can tell its stored copy is current without reading (or rendering) the lines.

Statement triggers on the line tables count the parent's `lines_revision` up once per statement
that adds, changes or removes its lines, whichever code path wrote them (services, admin, a
queryset update, raw SQL). A row trigger on the parent keeps the number from going down: a save
from a copy loaded before the lines changed writes the old number back, and is overruled.
The functions run as the caller, so row-level security applies to the parent's update as it
does to the line's write (both rows belong to the same client)."""
from django.db import migrations, models

PARENTS = [("invoices_invoiceline", "invoices_invoice", "invoice_id"),
           ("invoices_creditnoteline", "invoices_creditnote", "credit_note_id")]


def _forward(line_table: str, parent_table: str, parent_column: str) -> str:
    bump = (f"UPDATE {parent_table} SET lines_revision = lines_revision + 1 "
            f"WHERE id IN (SELECT {parent_column} FROM {{rows}})")
    both = (f"UPDATE {parent_table} SET lines_revision = lines_revision + 1 WHERE id IN "
            f"(SELECT {parent_column} FROM new_lines UNION SELECT {parent_column} FROM old_lines)")
    return f"""
CREATE FUNCTION {line_table}_revise() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN {bump.format(rows="new_lines")};
    ELSIF TG_OP = 'DELETE' THEN {bump.format(rows="old_lines")};
    ELSE {both};
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER {line_table}_inserted AFTER INSERT ON {line_table}
    REFERENCING NEW TABLE AS new_lines FOR EACH STATEMENT EXECUTE FUNCTION {line_table}_revise();
CREATE TRIGGER {line_table}_updated AFTER UPDATE ON {line_table}
    REFERENCING OLD TABLE AS old_lines NEW TABLE AS new_lines FOR EACH STATEMENT EXECUTE FUNCTION {line_table}_revise();
CREATE TRIGGER {line_table}_deleted AFTER DELETE ON {line_table}
    REFERENCING OLD TABLE AS old_lines FOR EACH STATEMENT EXECUTE FUNCTION {line_table}_revise();
CREATE FUNCTION {parent_table}_keep_lines_revision() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.lines_revision := GREATEST(NEW.lines_revision, OLD.lines_revision);
    RETURN NEW;
END $$;
CREATE TRIGGER {parent_table}_keep_lines_revision BEFORE UPDATE ON {parent_table}
    FOR EACH ROW EXECUTE FUNCTION {parent_table}_keep_lines_revision();
"""


def _backward(line_table: str, parent_table: str, parent_column: str) -> str:
    return f"""
DROP TRIGGER {parent_table}_keep_lines_revision ON {parent_table};
DROP FUNCTION {parent_table}_keep_lines_revision();
DROP TRIGGER {line_table}_inserted ON {line_table};
DROP TRIGGER {line_table}_updated ON {line_table};
DROP TRIGGER {line_table}_deleted ON {line_table};
DROP FUNCTION {line_table}_revise();
"""


class Migration(migrations.Migration):

    dependencies = [
        ("invoices", "0011_client_and_brand_names"),
    ]

    operations = [
        migrations.AddField(model_name="invoice", name="lines_revision",
                            field=models.PositiveIntegerField(default=0, editable=False)),
        migrations.AddField(model_name="creditnote", name="lines_revision",
                            field=models.PositiveIntegerField(default=0, editable=False)),
        *[migrations.RunSQL(_forward(*tables), _backward(*tables)) for tables in PARENTS],
    ]
