"""revocation URLs (being written)."""

urlpatterns: list = []
