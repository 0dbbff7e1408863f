"""Manual delivery actions (agent permission), mounted under /agent/deliveries/."""

from django.urls import path

from . import views

app_name = "delivery"

urlpatterns = [
    path("send/<str:serial>/", views.send, name="send"),
    path("<str:public_id>/retry/", views.retry, name="retry"),
    path("request/<str:public_id>/", views.status, name="status"),
]
