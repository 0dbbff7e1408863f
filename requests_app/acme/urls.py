"""ACME's URLs, under /acme/ (ca_portal/urls.py includes them)."""

from django.urls import path

from . import views

app_name = "acme"

urlpatterns = [
    path("directory", views.directory, name="directory"),
    path("new-nonce", views.new_nonce, name="new_nonce"),
    path("new-account", views.new_account, name="new_account"),
    path("new-order", views.new_order, name="new_order"),
    path("revoke-cert", views.revoke_cert, name="revoke_cert"),
    path("key-change", views.key_change, name="key_change"),
    path("acct/<slug:slug>", views.account, name="account"),
    path("acct/<slug:slug>/orders", views.account_orders, name="account_orders"),
    path("order/<slug:slug>", views.order, name="order"),
    path("order/<slug:slug>/finalize", views.finalize, name="finalize"),
    path("authz/<slug:slug>", views.authz, name="authz"),
    path("chall/<slug:slug>", views.challenge, name="challenge"),
    path("cert/<slug:slug>", views.certificate, name="certificate"),
    path("renewal-info", views.renewal_info, name="renewal_info_base"),
    path("renewal-info/<str:cert_id>", views.renewal_info, name="renewal_info"),
]
