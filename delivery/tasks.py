"""Background tasks (Django's tasks API; django-tasks-db's db_worker runs them)."""

from django.tasks import task


@task
def deliver_task(delivery_id: int) -> str:
    """Send one queued delivery (a no-op if another worker has it or it is done)."""
    from . import services

    return services.deliver(delivery_id)
