"""Lists of requests that never count the whole table.

The services keep a counter per status (StatusCount), so the size of a list that is
unfiltered or filtered by status alone is known without COUNT(*). Any other list is paged
without a size: a page fetches one row more than it shows to learn whether another follows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cached_property

from django.core.paginator import Page, Paginator

from . import services
from .models import CertificateRequest

#: Keeps OFFSET within the database's integer range whatever page number is typed.
MAX_PAGE = 100_000


def counted_rows(
    params: Mapping[str, str], *, status_param: str, ignored: Iterable[str] = ()
) -> int | None:
    """The size of a list from the status counters, or None when a filter besides status applies."""
    filters = set(params) - set(ignored)
    if not filters:  # the whole queue, which leaves out what is not yet the agents' business
        hidden = CertificateRequest.NOT_IN_QUEUE
        return sum(n for status, n in services.status_counts().items() if status not in hidden)
    if filters == {status_param}:
        return services.status_counts().get(params[status_param])
    return None


def page_number(text: str | int | None) -> int:
    """A typed page number as an int between 1 and MAX_PAGE; 1 for anything else."""
    try:
        return min(max(int(text or 1), 1), MAX_PAGE)
    except (TypeError, ValueError):
        return 1


class CountFreePaginator(Paginator):
    """Django's Paginator that never runs COUNT(*).

    Given `count` (from counted_rows) it pages like Django's, page links and all; without
    one, look_ahead_page() pages by fetching a row more than it shows."""

    def __init__(self, *args, count: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._known_count = count

    @cached_property
    def count(self) -> int:
        if self._known_count is None:
            raise TypeError("this list has no known size; page it with look_ahead_page()")
        return self._known_count

    def look_ahead_page(self, number: str | int | None) -> LookAheadPage:
        """The page of that (typed) number, possibly empty, knowing only if another follows."""
        number = page_number(number)
        bottom = (number - 1) * self.per_page
        rows = list(self.object_list[bottom : bottom + self.per_page + 1])
        return LookAheadPage(rows[: self.per_page], number, self, more=len(rows) > self.per_page)


class LookAheadPage(Page):
    """A page of a list whose size is unknown: it knows its neighbours, not the last page."""

    def __init__(self, object_list, number: int, paginator: Paginator, *, more: bool):
        super().__init__(object_list, number, paginator)
        self.more = more

    def __repr__(self) -> str:
        return f"<Page {self.number}>"

    def has_next(self) -> bool:
        return self.more

    def next_page_number(self) -> int:
        return self.number + 1

    def previous_page_number(self) -> int:
        return self.number - 1
