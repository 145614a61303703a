"""The pull adapter: reads an ERP that cannot push (a connection of kind "erp_pull", configured
in admin as an ErpPull with its feeds) page by page, and turns each record into the canonical
event of docs/webhooks.md, stored by integrations.services.event_store with the same
"accounting.event" job as every other source. Nothing here creates an invoice or records a
payment itself.

One pull (the "erp.pull" job, integrations.erp.tasks) reads the feeds in their order (customers
first), each from its first page or where it stopped:
- paging: offset and limit; a cursor found in the answer (the feed's `next_cursor`); the `Link`
  header's rel="next" (RFC 8288, only on the endpoint's own site); GraphQL Relay
  (pageInfo.hasNextPage and endCursor, the query's $first and $after);
- REST requests are GET <endpoint>/<path>?offset=&limit= (or cursor=), or the path with
  {offset}, {limit}, {page}, {cursor} and {since} written where the ERP wants them; GraphQL
  requests POST the feed's query with the variables it declares ($first, $after, $offset, $limit,
  $cursor and the modified-since variable);
- incremental: a feed with a modified-since parameter asks only for records changed since its
  watermark (the latest `version` seen, moved when the feed is read to its end); a feed paged by
  cursor without one goes on after its last cursor; any other is read whole each time (a record
  read again unchanged is a duplicate: its natural key hashes its event's data);
- a record that does not map, or whose event the ledger would refuse, is parked (ErpParked) with
  the reason and read on; it is resolved when it maps, on a later pull or replayed by staff after
  the mapping is fixed (`parked_replay`);
- progress (records and pages read, the next page) is committed after each page, so staff see a
  running pull move and a pull cut off (a worker lost, a 429, its time spent) goes on where it
  stopped. Offset paging over a list that changes while it is read can skip a record that moved
  to an earlier page; Link, cursor and Relay paging that the ERP keys on its records do not.

No call to the ERP is made inside a database transaction."""
from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import quote, urljoin

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from integrations import services
from integrations.erp.client import ErpClient, ErpRefused
from integrations.erp.mapping import (MappingInvalid, Unmappable, data_digest, map_record, parse, record_key,
                                      record_version, search, version_later)
from integrations.erp.models import ErpFeed, ErpParked, ErpPull
from integrations.models import Connection
from invoices.models import Invoice
from portal.models import WebhookRequest

SOURCE = "erp_pull"  # what staff see as the stored events' source (Back office → Webhooks)
PULL_SECONDS = 600.0  # one job reads at most this long, then the next job goes on (its lease is longer)
PREVIEW_RECORDS = 25
PLACEHOLDER = re.compile(r"\{(offset|limit|page|cursor|since)\}")
DECLARED = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)\s*:")
Paging = ErpPull.Paging


@dataclass
class Page:
    records: list
    next: str = ""  # where the next page starts ("" when this was the last)
    end_cursor: str = ""  # the last cursor of this page (cursor and Relay paging)


@dataclass
class Counts:
    records: int = 0
    pages: int = 0
    stored: int = 0
    duplicates: int = 0
    parked: int = 0
    skipped: int = 0
    refused: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class PreviewRow:
    key: str
    event: dict | None = None
    reason: str = ""

    @property
    def shown(self) -> str:
        return json.dumps(self.event, indent=2, ensure_ascii=False) if self.event else ""


@dataclass
class FeedPreview:
    feed: ErpFeed
    rows: list[PreviewRow] = field(default_factory=list)
    error: str = ""
    more: bool = False

    @property
    def mapped(self) -> int:
        return sum(1 for row in self.rows if row.event)


# --- Pages -----------------------------------------------------------------------------------------

def by_cursor(erp: ErpPull, feed: ErpFeed) -> bool:
    """The feed goes on after its last cursor from pull to pull (no modified-since parameter)."""
    return not feed.since_param and erp.paging in (Paging.CURSOR, Paging.RELAY)


def since_name(erp: ErpPull, feed: ErpFeed) -> str:
    return feed.since_param or ("since" if erp.style == ErpPull.Style.GRAPHQL else "")


def page_fetch(client: ErpClient, erp: ErpPull, feed: ErpFeed, position: str, *, since: str = "",
               limit: int | None = None) -> Page:
    """One page of the feed from `position` ("" for the first), asking only for records changed
    since `since` when given. Raises the client's errors; ErpRefused when the answer holds no
    list where the feed says its records are."""
    limit = limit or erp.page_size
    offset = int(position) if erp.paging == Paging.OFFSET and position.isdigit() else 0
    cursor = position if erp.paging in (Paging.CURSOR, Paging.RELAY) else ""
    if erp.style == ErpPull.Style.GRAPHQL:
        declared = set(DECLARED.findall(feed.request))
        values = {"first": limit, "limit": limit, "offset": offset, "after": cursor or None,
                  "cursor": cursor or None}
        if since and since_name(erp, feed):
            values[since_name(erp, feed)] = since
        answer = client.graphql(feed.request, {name: value for name, value in values.items() if name in declared})
    elif erp.paging == Paging.LINK and position:
        answer = client.get(position)  # the ERP's own next address, parameters and all
    else:
        answer = client.get(*_rest_request(client, erp, feed, offset=offset, limit=limit, cursor=cursor, since=since))
    records = search(feed.records or "@", answer.data) if answer.data is not None else []
    if records is None:
        records = []
    if not isinstance(records, list):
        raise ErpRefused(f"the answer holds no list of records at {feed.records!r}", answer.status)
    return Page(records, *_next(erp, feed, answer, records, offset=offset, limit=limit, cursor=cursor))


def _rest_request(client: ErpClient, erp: ErpPull, feed: ErpFeed, *, offset: int, limit: int, cursor: str,
                  since: str) -> tuple[str, dict]:
    values = {"offset": offset, "limit": limit, "page": offset // limit + 1, "cursor": cursor, "since": since}
    path = feed.request.strip()
    templated = set(PLACEHOLDER.findall(path))
    path = PLACEHOLDER.sub(lambda found: quote(str(values[found.group(1)]), safe=""), path)
    params: dict = {}
    if not templated & {"offset", "limit", "page", "cursor"}:
        params["limit"] = limit
        if erp.paging == Paging.OFFSET:
            params["offset"] = offset
        elif erp.paging == Paging.CURSOR and cursor:
            params["cursor"] = cursor
    if since and feed.since_param and "since" not in templated:
        params[feed.since_param] = since
    return client.url(path), params


def _next(erp: ErpPull, feed: ErpFeed, answer, records: list, *, offset: int, limit: int,
          cursor: str) -> tuple[str, str]:
    """(where the next page starts or "", the page's last cursor)."""
    data = answer.data
    if erp.paging == Paging.OFFSET:
        total = data.get("total") if isinstance(data, dict) else None
        if len(records) < limit or (isinstance(total, int) and offset + limit >= total):
            return "", ""
        return str(offset + limit), ""
    if erp.paging == Paging.LINK:
        following = (answer.links.get("next") or {}).get("url", "")
        return (urljoin(answer.url, following) if following else ""), ""
    if erp.paging == Paging.CURSOR:
        found = search(feed.next_cursor, data) if feed.next_cursor else None
        found = "" if found is None or isinstance(found, (dict, list)) else str(found)
        if not found or found == cursor or len(records) < limit:
            return "", (found or "")
        return found, found
    info = _page_info(feed, data)  # Relay
    end = info.get("endCursor") if isinstance(info, dict) else None
    end = "" if end is None else str(end)
    more = bool(info.get("hasNextPage")) if isinstance(info, dict) else False
    if not more or not end or end == cursor or not records:
        return "", end
    return end, end


def _page_info(feed: ErpFeed, data):
    """The connection's pageInfo: beside the feed's `next_cursor` (…pageInfo.endCursor) when it
    says, else the first pageInfo in the answer."""
    if feed.next_cursor and feed.next_cursor.endswith(".endCursor"):
        return search(feed.next_cursor.rsplit(".", 1)[0], data)
    stack = [data]
    while stack:
        node = stack.pop(0)
        if isinstance(node, dict):
            if isinstance(node.get("pageInfo"), dict):
                return node["pageInfo"]
            stack.extend(node.values())
    return None


# --- A pull ----------------------------------------------------------------------------------------

def pull(erp: ErpPull, *, seconds: float | None = None, client: ErpClient | None = None) -> tuple[dict, bool]:
    """One pull of every feed (see the module's docstring): (counts, whether every feed was read
    to its end). False when its time ran out; the next pull goes on where this one stopped.
    Raises the client's errors; what was stored before stays stored."""
    client = client or ErpClient(erp)
    with transaction.atomic():
        connection = Connection.objects.get(pk=erp.connection_id)
        feeds = list(ErpFeed.objects.filter(erp=erp).order_by("position", "pk"))
    deadline = time.monotonic() + (PULL_SECONDS if seconds is None else seconds)
    counts = Counts()
    for feed in feeds:
        if not feed_pull(client, erp, connection, feed, counts, deadline=deadline):
            return counts.as_dict(), False
    with transaction.atomic():
        ErpPull.objects.filter(pk=erp.pk).update(last_pull_at=timezone.now(), last_error="")
    return counts.as_dict(), True


def feed_pull(client: ErpClient, erp: ErpPull, connection: Connection, feed: ErpFeed, counts: Counts, *,
              deadline: float) -> bool:
    """Read one feed from where it stands to its end, page by page; False when the deadline
    passed first (its progress is kept)."""
    cursor_kept = by_cursor(erp, feed)
    position = feed.cursor
    if cursor_kept or not position:
        _progress(feed, reset=True)
    since = feed.watermark if feed.since_param else ""
    newest = feed.watermark or None
    while True:
        page = page_fetch(client, erp, feed, position, since=since)
        newest = _store_page(connection, feed, page.records, counts, newest)
        counts.records += len(page.records)
        counts.pages += 1
        if page.next:
            resume = page.next
        else:
            resume = (page.end_cursor or position) if cursor_kept else ""
        _progress(feed, cursor=resume, records=len(page.records))
        if not page.next:
            with transaction.atomic():
                ErpFeed.objects.filter(pk=feed.pk).update(watermark=str(newest or "")[:100], pulled_at=timezone.now())
            feed.watermark = str(newest or "")[:100]
            return True
        position = page.next
        if time.monotonic() > deadline:
            return False


def _progress(feed: ErpFeed, *, reset: bool = False, cursor: str | None = None, records: int = 0) -> None:
    with transaction.atomic():
        rows = ErpFeed.objects.filter(pk=feed.pk)
        if reset:
            rows.update(records_seen=0, pages_read=0)
            return
        changes = {"records_seen": F("records_seen") + records, "pages_read": F("pages_read") + 1}
        if cursor is not None:
            changes["cursor"] = cursor if len(cursor) <= 500 else ""  # too long to keep: begin again
        rows.update(**changes)
    feed.cursor = cursor if cursor is not None else feed.cursor


def _store_page(connection: Connection, feed: ErpFeed, records: list, counts: Counts, newest):
    for record in records:
        version = record_version(feed.version, record)
        if version is not None and (newest is None or version_later(version, newest)):
            newest = version
        outcome = record_take(connection, feed, record)
        setattr(counts, outcome, getattr(counts, outcome) + 1)
    return newest


def _key_of(feed: ErpFeed, record) -> str:
    try:
        return record_key(feed.key, record)
    except Unmappable:
        # No id to name it by: parked under a hash of itself (read again, it is the same row).
        return "no-id:" + hashlib.sha256(record_text(record).encode()).hexdigest()[:32]


def record_take(connection: Connection, feed: ErpFeed, record) -> str:
    """Map one record and store its event ("stored", "duplicates", "skipped"), or park it
    ("parked") with the reason. A record that maps resolves its parked row."""
    key = _key_of(feed, record)
    try:
        if key.startswith("no-id:"):
            raise Unmappable(f"the record has no id at {feed.key or 'id'}")
        event = map_record(entity=feed.entity, mapping=feed.mapping, record=record)
    except (Unmappable, MappingInvalid) as exc:
        park(feed, key, record, str(exc))
        return "parked"
    with transaction.atomic():
        if event["type"] == "invoice.voided" and not _invoice_known(connection, event["data"]["external_id"]):
            outcome = "skipped"  # void and never in the portal: nothing to void
        else:
            outcome = services.event_store(connection, source=SOURCE, natural_key=natural_key(event, key),
                                           payload=event)
        ErpParked.objects.filter(feed=feed, record_key=key, resolved_at__isnull=True).update(
            resolved_at=timezone.now())
    return outcome


def natural_key(event: dict, key: str) -> str:
    named = key if len(key) <= 120 else hashlib.sha256(key.encode()).hexdigest()[:40]
    return f"{event['type']}:{named}:{data_digest(event)}"


def _invoice_known(connection: Connection, external_id: str) -> bool:
    return Invoice.objects.filter(connection=connection, external_id=external_id).exists() or \
        WebhookRequest.objects.filter(source=SOURCE, account=connection.slug, status=WebhookRequest.Status.ACCEPTED,
                                      natural_key__startswith=f"invoice.updated:{external_id}:").exists()


# --- Parked records --------------------------------------------------------------------------------

def record_text(record, *, indent: int | None = None) -> str:
    """The record as JSON with its numbers as the ERP wrote them (Decimals kept exact)."""
    marked = _mark_decimals(record)
    text = json.dumps(marked, ensure_ascii=False, sort_keys=True, indent=indent)
    return re.sub(r'"\\u0000dec:([0-9eE+.\-]+)\\u0000"', r"\1", text)


def _mark_decimals(value):
    if isinstance(value, Decimal):
        return f"\x00dec:{value}\x00"
    if isinstance(value, dict):
        return {key: _mark_decimals(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_mark_decimals(item) for item in value]
    return value


def park(feed: ErpFeed, key: str, record, reason: str) -> ErpParked:
    """Keep the record with why it did not map (one row per feed and record, the latest kept)."""
    with transaction.atomic():
        parked, _ = ErpParked.objects.update_or_create(
            feed=feed, record_key=key[:200],
            defaults={"record": record_text(record), "reason": reason[:2000], "resolved_at": None})
    return parked


def parked_record(parked: ErpParked):
    return parse(parked.record) if isinstance(parked.record, str) else parked.record


def parked_replay(parked: ErpParked) -> str:
    """Map a parked record again with its feed's mapping as it is now: its event stored and the
    row resolved, or the new reason kept. Database only (the record is the one read then)."""
    feed = ErpFeed.objects.select_related("erp").get(pk=parked.feed_id)
    with transaction.atomic():
        connection = Connection.objects.get(pk=feed.erp.connection_id)
    outcome = record_take(connection, feed, parked_record(parked))
    parked.refresh_from_db()
    return outcome


# --- Preview ---------------------------------------------------------------------------------------

def preview(erp: ErpPull, *, client: ErpClient | None = None) -> list[FeedPreview]:
    """The first page of every feed fetched live and each record mapped, or why not; nothing is
    stored. When at least one record mapped, the connection may be turned on (`previewed_at`)."""
    from integrations.erp.client import ErpError

    client = client or ErpClient(erp)
    with transaction.atomic():
        feeds = list(ErpFeed.objects.filter(erp=erp).order_by("position", "pk"))
    shown = []
    for feed in feeds:
        result = FeedPreview(feed)
        try:
            page = page_fetch(client, erp, feed, "", limit=min(erp.page_size, PREVIEW_RECORDS))
        except (ErpError, Unmappable) as exc:
            result.error = str(exc)
            shown.append(result)
            continue
        result.more = bool(page.next)
        for record in page.records[:PREVIEW_RECORDS]:
            key = _key_of(feed, record)
            try:
                if key.startswith("no-id:"):
                    raise Unmappable(f"the record has no id at {feed.key or 'id'}")
                result.rows.append(PreviewRow(key, event=map_record(entity=feed.entity, mapping=feed.mapping,
                                                                    record=record)))
            except (Unmappable, MappingInvalid) as exc:
                result.rows.append(PreviewRow(key, reason=str(exc)))
        shown.append(result)
    if any(result.mapped for result in shown):
        with transaction.atomic():
            erp.previewed_at = timezone.now()
            ErpPull.objects.filter(pk=erp.pk).update(previewed_at=erp.previewed_at)
    return shown
