"""Manual delivery actions (agent permission), mounted under /agent/deliveries/."""

from django.urls import path

from requests_app import converters  # noqa: F401  (registers the "serial" path converter)

from . import views

app_name = "delivery"

urlpatterns = [
    path("send/<serial:serial>/", views.send, name="send"),
    path("<str:public_id>/retry/", views.retry, name="retry"),
    path("request/<str:public_id>/", views.status, name="status"),
]
