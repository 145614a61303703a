"""The portal's URLs and a bare view that answers 202 without work: bench/webhooks.py's
yardstick for the webhook intake (what Django and its middleware cost before the intake does
anything). Only in the bench's web server (tests/support/bench_webhooks.py)."""
from django.http import HttpResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt
def bare(request):
    return HttpResponse(status=202)


urlpatterns = [
    path("bench/bare/", bare),
    path("", include("portal.urls")),
]
