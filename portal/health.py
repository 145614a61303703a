"""The back office's health page: per queue (fast, slow) whether a worker consumes it and how
long its oldest due job has waited; background jobs per day, kind and state (the one mechanism
every kind of work goes through), rejected webhooks, and when the scheduled tasks last ran
(a warning after two quiet hours: reminders that stop silently are the most common
complaint about other portals)."""
import datetime

from django.contrib.admin.views.decorators import staff_member_required
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _

from portal.jobs import FAST, QUEUES, SLOW, jobs_figures
from portal.models import Job, ScheduledRun
from portal.rls import staff_scope
from portal.selectors import queue_backlog
from portal.tasks import worker_run_name
from portal.webhooks import rejections_last

QUIET = datetime.timedelta(hours=2)
WATCHED = ("beat", "job sweep", "reminder scanner")
# Beat sends each queue a heartbeat a minute (portal.tasks.worker_heartbeat): none taken for this
# long means no worker consumes the queue (or all of them are busy for that long).
WORKER_QUIET = datetime.timedelta(minutes=5)
# A due job waiting longer than this on its queue: the queue needs more workers (docs/scaling.md).
WAIT_WARNING = {FAST: datetime.timedelta(minutes=2), SLOW: datetime.timedelta(minutes=30)}


@staff_member_required
def health(request):
    with staff_scope():
        figures = jobs_figures(days=14)
        runs = {run.name: run for run in ScheduledRun.objects.all()}
        rejected = rejections_last(hours=24)
        now = timezone.now()
        backlog = queue_backlog(now=now)
    scheduled = [{"name": name, "run": runs.get(name),
                  "quiet": name not in runs or now - runs[name].last_run_at > QUIET} for name in WATCHED]
    queues = []
    for queue in QUEUES:
        heartbeat = runs.get(worker_run_name(queue))
        waited = now - backlog[queue]["oldest"] if backlog[queue]["oldest"] else None
        queues.append({**backlog[queue], "heartbeat": heartbeat, "waited": waited,
                       "no_worker": heartbeat is None or now - heartbeat.last_run_at > WORKER_QUIET,
                       "slow": waited is not None and waited > WAIT_WARNING[queue]})
    return render(request, "admin/health.html", {
        "title": _("Health"), "figures": figures, "states": Job.State.choices, "jobs": scheduled,
        "queues": queues, "rejected": rejected, "site_header": _("Client portal back office")})
