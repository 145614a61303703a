"""The back office's health page: background jobs per day, kind and state (the one mechanism
every kind of work goes through), rejected webhooks, and when the scheduled tasks last ran
(a warning after two quiet hours: reminders that stop silently are the most common
complaint about other portals)."""
import datetime

from django.contrib.admin.views.decorators import staff_member_required
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _

from portal.jobs import jobs_figures
from portal.models import Job, ScheduledRun
from portal.rls import staff_scope
from portal.webhooks import rejections_last

QUIET = datetime.timedelta(hours=2)
WATCHED = ("beat", "job sweep", "reminder scanner")


@staff_member_required
def health(request):
    with staff_scope():
        figures = jobs_figures(days=14)
        runs = {run.name: run for run in ScheduledRun.objects.all()}
        rejected = rejections_last(hours=24)
    now = timezone.now()
    scheduled = [{"name": name, "run": runs.get(name),
                  "quiet": name not in runs or now - runs[name].last_run_at > QUIET} for name in WATCHED]
    return render(request, "admin/health.html", {
        "title": _("Health"), "figures": figures, "states": Job.State.choices, "jobs": scheduled,
        "rejected": rejected, "site_header": _("Client portal back office")})
