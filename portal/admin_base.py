"""Admin base classes every app's admin uses (audited changes, read-only records). Kept apart
from portal.admin, which registers the portal's own models and imports the ledger's views."""
from django import forms
from django.contrib import admin
from django.db.models import Subquery
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from portal.formatting import format_day, format_moment, format_money, format_number
from portal.models import AuditEvent, Client, Job
from portal.services import audit_record


def _client_of(obj):
    if isinstance(obj, Client):
        return obj
    return getattr(obj, "client", None) if hasattr(obj, "client_id") else None


class AuditedAdminMixin:
    """Every add, change and delete made in admin also lands in the audit log."""

    def log_addition(self, request, obj, message):
        audit_record(action=AuditEvent.Action.ADMIN_ADDED, request=request, obj=obj, client=_client_of(obj),
                     details={"change": str(message)})
        return super().log_addition(request, obj, message)

    def log_change(self, request, obj, message):
        audit_record(action=AuditEvent.Action.ADMIN_CHANGED, request=request, obj=obj, client=_client_of(obj),
                     details={"change": message if isinstance(message, (list, str)) else str(message)})
        return super().log_change(request, obj, message)

    def log_deletions(self, request, queryset):
        for obj in queryset:
            audit_record(action=AuditEvent.Action.ADMIN_DELETED, request=request, obj=obj,
                         client=_client_of(obj))
        return super().log_deletions(request, queryset)


class AuditedModelAdmin(AuditedAdminMixin, admin.ModelAdmin):
    pass


class ReadOnlyAdminMixin:
    """For records nobody edits by hand: logs, ledgers, stored events. Their change page is a
    view (Close, no Save or Delete), their list has no delete action."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def with_job(queryset, key):
    """Annotate each row with the job whose key is `key` (an expression on the row, e.g.
    Concat(Value("reminder:"), "pk")): job_pk, job_state, job_attempts, job_max_attempts, in
    the list's one query rather than one per row."""
    job = Job.objects.filter(key=key)
    return queryset.annotate(**{f"job_{field}": Subquery(job.values(field)[:1])
                                for field in ("pk", "state", "attempts", "max_attempts")})


def job_link(obj) -> str:
    """A link to the row's job (see with_job) showing its state and attempts, or a dash."""
    if getattr(obj, "job_pk", None) is None:
        return "—"
    return format_html('<a href="{}">{} ({}/{})</a>', reverse("admin:portal_job_change", args=[obj.job_pk]),
                       Job.State(obj.job_state).label, obj.job_attempts, obj.job_max_attempts)


class LedgerAdminMixin(ReadOnlyAdminMixin):
    """Ledger rows (invoices, credit notes, payments, allocations, credit, stored events, the
    audit log): nobody deletes or edits one in admin, whatever its state, because the ledger,
    its audit trail and the accounting system would no longer agree. What may change goes
    through a service, from an admin action (voiding an invoice, replaying a job)."""


MASK = "••••"


def mask_secret(value: str) -> str:
    """`••••1234`: enough to tell two secrets apart, never enough to use one. A short secret
    shows nothing of itself."""
    value = (value or "").strip()
    if not value:
        return ""
    return MASK + (value[-4:] if len(value) >= 12 else "")


class SecretInput(forms.TextInput):
    """Shows a secret only masked (`••••1234`), never in clear: a value that is not a mask (a
    new secret typed into a form that failed on another field) is not sent back to the browser."""

    def __init__(self, attrs=None):
        super().__init__({"autocomplete": "off", "spellcheck": "false", **(attrs or {})})

    def format_value(self, value):
        value = super().format_value(value)
        return value if value and value.startswith(MASK) else None


class SecretLinesInput(forms.Textarea):
    """Several secrets, one per line (a rotation lists the new and the old one), each masked."""

    def __init__(self, attrs=None):
        super().__init__({"autocomplete": "off", "spellcheck": "false", "rows": 3, **(attrs or {})})

    def format_value(self, value):
        lines = [line for line in (super().format_value(value) or "").splitlines() if line.startswith(MASK)]
        return "\n".join(lines) or None


def _keep_or_replace(typed: str, current: str, *, lines: bool) -> str:
    """What a secret field holds after a save: a line left as its mask keeps the secret it
    stands for (a mask that stands for none is dropped), a typed line replaces it; an empty
    field keeps everything as it was."""
    if not typed.strip():
        return current
    if not lines:
        return current if typed.strip().startswith(MASK) else typed.strip()
    by_mask: dict[str, list[str]] = {}
    for secret in current.splitlines():
        if secret.strip():
            by_mask.setdefault(mask_secret(secret), []).append(secret.strip())
    kept = []
    for line in (line.strip() for line in typed.splitlines()):
        if line.startswith(MASK):
            if by_mask.get(line):
                kept.append(by_mask[line].pop(0))
        elif line:
            kept.append(line)
    return "\n".join(kept)


class SecretFieldsMixin:
    """Secret model fields (keys, signing secrets) in a change form: shown masked, replaced
    only by typing a new value; left alone (or empty), the stored secret stays."""

    secret_fields: tuple[str, ...] = ()
    secret_lines_fields: tuple[str, ...] = ()  # several secrets, one per line

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name in self.secret_lines_fields:
            kwargs["widget"] = SecretLinesInput
        elif db_field.name in self.secret_fields:
            kwargs["widget"] = SecretInput
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        names, lines = (*self.secret_fields, *self.secret_lines_fields), self.secret_lines_fields

        class SecretForm(form):
            def __init__(self, *args, **kw):
                super().__init__(*args, **kw)
                for name in names:
                    if name not in self.fields:
                        continue
                    current = getattr(self.instance, name, "") or ""
                    masks = [mask_secret(s) for s in current.splitlines() if s.strip()]
                    self.initial[name] = "\n".join(masks) if name in lines else mask_secret(current)
                    if current:
                        self.fields[name].required = False
                        self.fields[name].help_text = format_html(
                            "{} {}", self.fields[name].help_text,
                            _("Shown masked: a masked line keeps its secret; add a line for a new one, remove a "
                              "line to drop it.") if name in lines else
                            _("Stored encrypted and shown masked; type a new value to replace it."))

            def clean(self):
                cleaned = super().clean()
                for name in names:
                    if name in self.fields and name in cleaned:
                        cleaned[name] = _keep_or_replace(cleaned[name] or "", getattr(self.instance, name, "") or "",
                                                         lines=name in lines)
                        if not cleaned[name] and not self._meta.model._meta.get_field(name).blank:
                            self.add_error(name, _("Keep at least one secret: leave its masked line or type a new one."))
                return cleaned

        return SecretForm


def money_display(field: str, description, *, currency_field: str = "currency", ordering: bool = True):
    """A list column or read-only field showing an amount in the reader's language with its
    currency (`€1,306.80`, `€ 1.306,80`), not the database's `1306.8000`."""

    @admin.display(description=description, ordering=field if ordering else None)
    def show(self, obj):
        return format_html('<span class="amount">{}</span>',
                           format_money(getattr(obj, field), _currency_of(obj, currency_field)))

    return show


def _currency_of(obj, path: str) -> str:
    for part in path.split("__"):
        obj = getattr(obj, part, None)
    return obj or "EUR"


def number_display(field: str, description, *, suffix: str = ""):
    """A quantity or rate in the reader's language (`2,5`, `21%`), without trailing zeros."""

    @admin.display(description=description)
    def show(self, obj):
        value = getattr(obj, field)
        return f"{format_number(value)}{suffix}" if value is not None else ""

    return show


def first_line(text: str, limit: int = 120) -> str:
    """An error's first line, cut to fit a list column; the change page has all of it."""
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[:limit - 1] + "…"


def day_display(field: str, description):
    """A date column as the reader's language writes it (`17 Dec 2026`, `17 dec 2026`): short
    enough to keep a list's key columns on one desktop screen."""

    @admin.display(description=description, ordering=field)
    def show(self, obj):
        return format_html('<span class="nowrap">{}</span>', format_day(getattr(obj, field)))

    return show


def moment_display(field: str, description):
    """A point in time, to the minute, in the reader's language (`17 Dec 2026, 14:05`)."""

    @admin.display(description=description, ordering=field)
    def show(self, obj):
        return format_moment(getattr(obj, field))

    return show


class TypedListFilter(admin.SimpleListFilter):
    """A list filter the staff member types into instead of picking from a list: for a field
    with as many values as there are rows (the client, the connection, a country, a job kind),
    where Django's own filters read every related row or every distinct value on each page view.
    Costs no query; the typed text filters with `lookup` (e.g. `client__name__icontains`). Made
    with `typed_filter`."""

    template = "admin/typed_filter.html"
    lookup = ""

    def lookups(self, request, model_admin):
        return [("", "")]  # one box stands for every value (a filter without choices is not shown)

    def get_facet_counts(self, pk_attname, filtered_qs):
        return {}

    def choices(self, changelist):
        # The box, and the list's other parameters (search, order, other filters) kept as it is sent.
        keep = [(name, value) for name, values in changelist.filter_params.items() if name != self.parameter_name
                for value in values]
        yield {"selected": bool(self.value()), "value": self.value() or "", "keep": keep}

    def queryset(self, request, queryset):
        value = (self.value() or "").strip()
        return queryset.filter(**{self.lookup: value}) if value else queryset


def typed_filter(parameter: str, lookup: str, title) -> type[TypedListFilter]:
    return type(f"TypedListFilter_{parameter}", (TypedListFilter,),
                {"parameter_name": parameter, "lookup": lookup, "title": title})
