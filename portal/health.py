"""The back office's health page: inbound events and outbox per connection and day, and when
the scheduled jobs last ran (a warning after two quiet hours: reminders that stop silently
are the most common complaint about other portals)."""
import datetime

from django.contrib.admin.views.decorators import staff_member_required
from django.db.models import Count, Q
from django.db.models.functions import TruncDate
from django.shortcuts import render
from django.utils import timezone

from integrations.models import InboundEvent, OutboxMessage
from portal.models import ScheduledRun
from portal.rls import staff_scope

QUIET = datetime.timedelta(hours=2)
WATCHED = ("beat", "reminder scanner")


@staff_member_required
def health(request):
    since = timezone.now() - datetime.timedelta(days=14)
    with staff_scope():
        events = (InboundEvent.objects.filter(received_at__gte=since).annotate(day=TruncDate("received_at"))
                  .values("connection__name", "day").order_by("-day", "connection__name")
                  .annotate(received=Count("pk"), processed=Count("pk", filter=Q(status="processed")),
                            rejected=Count("pk", filter=Q(status="rejected")),
                            failed=Count("pk", filter=Q(status="waiting")), dead=Count("pk", filter=Q(status="dead"))))
        outbox = (OutboxMessage.objects.filter(created_at__gte=since).annotate(day=TruncDate("created_at"))
                  .values("connection__name", "day").order_by("-day", "connection__name")
                  .annotate(written=Count("pk"), delivered=Count("pk", filter=Q(status="delivered")),
                            dead=Count("pk", filter=Q(status="dead"))))
        runs = {run.name: run for run in ScheduledRun.objects.all()}
    now = timezone.now()
    jobs = [{"name": name, "run": runs.get(name),
             "quiet": name not in runs or now - runs[name].last_run_at > QUIET} for name in WATCHED]
    return render(request, "admin/health.html", {"title": "Health", "events": events, "outbox": outbox,
                                                  "jobs": jobs, "site_header": "Client portal back office"})
