"""dogtag URLs (being written)."""

urlpatterns: list = []
