"""Run every task of the beat schedule once, now, in this process: `make run` does it right after
starting the worker, so a fresh start has scanned for reminders, generated what recurring
schedules owe, marked overdue invoices and swept the jobs at once, instead of an hour later
(the health page would say "never run" until then). The same Celery tasks beat runs, called
directly; the work they leave (a reminder to send) is a job the worker does."""
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils.module_loading import import_string


class Command(BaseCommand):
    help = "Run each task of CELERY_BEAT_SCHEDULE once, now (make run does this at start)."

    def handle(self, *args, **options):
        failed = []
        # The ledger's and the reminders' work first; then the sweep (it rings for the jobs they
        # left, should a bell have been lost) and the heartbeat.
        last = ("sweep-jobs", "heartbeat")
        schedule = sorted(settings.CELERY_BEAT_SCHEDULE.items(), key=lambda item: last.index(item[0]) + 1
                          if item[0] in last else 0)
        for name, entry in schedule:
            task = import_string(entry["task"])
            result = task.apply(args=entry.get("args", ()), kwargs=entry.get("kwargs", {}))
            if result.failed():
                failed.append(name)
                self.stderr.write(f"{name}: {result.result!r}")
            else:
                self.stdout.write(f"{name}: {result.result}")
        if failed:
            raise CommandError(f"scheduled tasks failed: {', '.join(failed)}")
