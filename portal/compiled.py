"""Querysets whose SQL is made once per process: the reads every request repeats.

Django builds and compiles a queryset's SQL afresh each time it runs: about 1 ms of CPU for a
read with joins here, more than PostgreSQL takes to answer it. The reads every request makes
(its session, its user, the user's memberships) and a download's document read run millions
of times with only their values changing. `CompiledQuery` builds the queryset once (per process
and database alias) with sample values, keeps the SQL Django made, and at each call binds the
caller's values in the sample values' places, runs that SQL through Django's cursor (so
row-level security's scope, the transaction guard and query counts all see it as any other
query) and builds the same model instances, select_related objects and annotations the
queryset would have.

The values bound are database values: ids, strings, decimals, dates and aware datetimes, not model
instances; each value that changes between calls (today's date, say) must be one of them, or
it would be compiled in as it was at the first call. A string may also be bound inside the
pattern of a `contains`/`icontains` lookup (escaped as Django escapes it). A query whose best
plan depends on its values (a search: a pattern matching one row or thousands) is made with
`prepare=False`: bound on the server all the same, but planned at each call for the values it
has, as PostgreSQL's generic plan for a prepared pattern is a poor one.
Evaluated and not taken: django-prepared-queries and django-prepared-query (the same idea, but
unmaintained since Django 2). What this relies on of Django's internals (the compiler's
`select`, `klass_info` and `annotation_col_map`, and `get_related_populators`) is held to the
plain queryset's answers by tests/portal/test_compiled.py.
"""
from __future__ import annotations

import datetime
import decimal
import itertools
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import psycopg
from psycopg.pq import Format
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.postgresql.psycopg_any import register_tzloader
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper
from django.db.models import Model, QuerySet
from django.db.models.query import ModelIterable, ValuesIterable, get_related_populators

_sample_numbers = itertools.count(1)
_TIMESTAMPTZ_OID = psycopg.adapters.types["timestamptz"].oid


def _sample(kind: type) -> Any:
    """A value of `kind` that no query would hold as a constant of its own."""
    n = next(_sample_numbers)
    if kind is int:
        return -7_919_000_000_000 - n
    if kind is str:
        return f"compiled~sample~{n}~qz"  # nothing a form strips (as it would a control character)
    if kind is datetime.datetime:
        return datetime.datetime(1901, 2, 3, 4, 5, 6, n, tzinfo=datetime.timezone.utc)
    if kind is datetime.date:
        return datetime.date(1800, 1, 1) + datetime.timedelta(days=n)
    if kind is decimal.Decimal:
        return decimal.Decimal(f"-791913{n}.37")
    raise TypeError(f"CompiledQuery binds int, str, Decimal, date and datetime values, not {kind.__name__}")


class _Unprepared(psycopg.Cursor):
    """A server-bound cursor whose statements psycopg never prepares."""

    def execute(self, query, params=None, *, prepare=None, binary=None):
        return super().execute(query, params, prepare=False, binary=binary)


def server_bound_cursor(connection, *, prepare: bool = True):
    """A cursor of `connection` whose values are bound on the server, not spelled into the SQL
    as Django's cursors do: a statement's text is then the same at every call, so psycopg
    prepares it once the connection has run it DATABASE_PREPARE_THRESHOLD times, and PostgreSQL
    plans it once per connection instead of at every request. Wrapped as Django wraps its own
    cursors: row-level security's scope, the transaction guard and the query log see what it
    runs, and errors arrive as Django's. `%s` placeholders, as everywhere. `prepare=False`:
    never prepared (planned at each call for its values)."""
    connection.ensure_connection()
    connection.validate_thread_sharing()
    bound = (psycopg.Cursor if prepare else _Unprepared)(connection.connection)
    # As Django's own cursors: datetimes read in the connection's time zone.
    if connection.connection.adapters.get_loader(_TIMESTAMPTZ_OID, Format.TEXT).timezone != connection.timezone:
        register_tzloader(connection.timezone, bound)
    return _LoggedAsWritten(bound, connection) if connection.queries_logged else connection.make_cursor(bound)


class _LoggedAsWritten(CursorDebugWrapper):
    """Where Django logs queries (DEBUG, query counts in tests): the statement as written, with
    `%s` where its values go, and the values beside it under "params" (Django's log asks the
    cursor for the SQL it last sent, which a prepared statement does not keep)."""

    def execute(self, sql, params=None):
        try:
            with self.debug_sql(sql, params):
                return CursorWrapper.execute(self, sql, params)
        finally:
            self.db.queries_log[-1]["params"] = params


@dataclass(frozen=True)
class _Template:
    sql: str
    # For each parameter of the SQL: the name of the value bound there (or None and the constant),
    # and whether it is bound inside a `contains` pattern.
    params: tuple[tuple[str | None, Any, bool], ...]
    model: type[Model]
    converters: tuple
    names: tuple[str, ...] | None = None  # a values() query's keys
    init_list: tuple[str, ...] = ()
    model_columns: slice = field(default_factory=lambda: slice(0))
    related_populators: tuple = ()
    annotation_col_map: dict = field(default_factory=dict)


class CompiledQuery:
    """`CompiledQuery(lambda user_id: Membership.objects.filter(user_id=user_id), user_id=int)`,
    then `.list(user_id=7)`. With `single=True` the query is read as QuerySet.get reads it
    (no ordering, at most two rows): `.get(...)` raises the model's DoesNotExist or
    MultipleObjectsReturned, `.get_or_none(...)` answers None for no row."""

    def __init__(self, build: Callable[..., QuerySet], *, single: bool = False, prepare: bool = True,
                 **kinds: type):
        self._build, self._single, self._prepare, self._kinds = build, single, prepare, kinds
        self._templates: dict[str, _Template] = {}
        self._lock = threading.Lock()

    def list(self, *, using: str = DEFAULT_DB_ALIAS, **values) -> list[Model]:
        template = self._template(using)
        if values.keys() != self._kinds.keys():
            raise TypeError(f"CompiledQuery takes {sorted(self._kinds)}, was given {sorted(values)}")
        connection = connections[using]
        params = [constant if name is None else
                  f"%{connection.ops.prep_for_like_query(values[name])}%" if contains else values[name]
                  for name, constant, contains in template.params]
        with server_bound_cursor(connection, prepare=self._prepare) as cursor:
            cursor.execute(template.sql, params)
            rows = cursor.fetchall()
        return [self._instance(template, row, using, connection) for row in rows]

    def get(self, *, using: str = DEFAULT_DB_ALIAS, **values) -> Model:
        obj = self.get_or_none(using=using, **values)
        if obj is None:
            model = self._template(using).model
            raise model.DoesNotExist(f"{model._meta.object_name} matching query does not exist.")
        return obj

    def get_or_none(self, *, using: str = DEFAULT_DB_ALIAS, **values) -> Model | None:
        if not self._single:
            raise TypeError("get() and get_or_none() are for a CompiledQuery made with single=True")
        rows = self.list(using=using, **values)
        if len(rows) > 1:
            raise rows[0].MultipleObjectsReturned(f"get() returned more than one {rows[0]._meta.object_name}")
        return rows[0] if rows else None

    @staticmethod
    def _instance(template: _Template, row, using: str, connection) -> Model | dict:
        if template.converters:
            row = list(row)
            for position, (converters, expression) in template.converters:
                value = row[position]
                for converter in converters:
                    value = converter(value, expression, connection)
                row[position] = value
        if template.names is not None:  # a values() query: a dict a row, as ValuesIterable
            return dict(zip(template.names, row))
        obj = template.model.from_db(using, template.init_list, row[template.model_columns])
        for populator in template.related_populators:
            populator.populate(row, obj)
        for name, position in template.annotation_col_map.items():
            setattr(obj, name, row[position])
        return obj

    def _template(self, using: str) -> _Template:
        template = self._templates.get(using)
        if template is None:
            with self._lock:
                template = self._templates.get(using) or self._compile(using)
                self._templates[using] = template
        return template

    @staticmethod
    def _bind(samples: dict, params) -> tuple[tuple[str | None, Any, bool], ...]:
        exact = {(type(value), value): name for name, value in samples.items()}
        # A string inside a contains lookup's pattern (the samples need no escaping).
        within = {f"%{value}%": name for name, value in samples.items() if isinstance(value, str)}
        bound = []
        for param in params:
            if (type(param), param) in exact:
                bound.append((exact[type(param), param], param, False))
            elif isinstance(param, str) and param in within:
                bound.append((within[param], param, True))
            else:
                bound.append((None, param, False))
        bound = tuple(bound)
        missing = set(samples) - {name for name, _, _ in bound}
        if missing:
            raise ValueError(f"CompiledQuery: {sorted(missing)} not found among the query's parameters: "
                             "bind database values (ids, not model instances)")
        return bound

    def _built(self, using: str):
        """The queryset built with fresh sample values: (samples, queryset, its compiler, SQL, params)."""
        samples = {name: _sample(kind) for name, kind in self._kinds.items()}
        queryset = self._build(**samples)
        if self._single:
            queryset = queryset.order_by()[:2]  # as QuerySet.get: no ordering, a second row seen
        compiler = queryset.query.get_compiler(using=using)
        return (samples, queryset, compiler, *compiler.as_sql())

    def _compile(self, using: str) -> _Template:
        samples, queryset, compiler, sql, params = self._built(using)
        bound = self._bind(samples, params)
        # Built again with other samples, the rest must come out the same: a value the builder
        # takes from elsewhere (timezone.now(), say) would otherwise stay as it was at the first call.
        again_samples, _queryset, _compiler, again_sql, again_params = self._built(using)
        if again_sql != sql or [c for n, c, _ in self._bind(again_samples, again_params) if n is None] != [
                c for n, c, _ in bound if n is None]:
            raise ValueError("CompiledQuery: the query changes between builds with the same arguments; pass "
                             "every value that changes (the time, today's date) as an argument")
        if (compiler.has_extra_select or queryset._known_related_objects or queryset._prefetch_related_lookups
                or queryset._iterable_class not in (ModelIterable, ValuesIterable)):
            raise ValueError("CompiledQuery compiles querysets of model instances or of values() dicts (no extra "
                             "select, known related objects or prefetches)")
        select = compiler.select
        converters = tuple(compiler.get_converters([column[0] for column in select[:compiler.col_count]]).items())
        params = tuple((name, None if name else constant, contains) for name, constant, contains in bound)
        query = queryset.query
        if queryset._iterable_class is ValuesIterable:
            names = (list(query.selected) if query.selected else
                     [*query.extra_select, *query.values_select, *query.annotation_select])
            return _Template(sql=sql, params=params, model=queryset.model, names=tuple(names), converters=converters)
        klass_info = compiler.klass_info
        first, last = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
        return _Template(
            sql=sql, params=params, model=klass_info["model"], converters=converters,
            init_list=tuple(column[0].target.attname for column in select[first:last]),
            model_columns=slice(first, last),
            related_populators=tuple(get_related_populators(klass_info, select, using)),
            annotation_col_map=dict(compiler.annotation_col_map or {}),
        )
