"""Lists of requests are paged without COUNT(*): from the status counters, or by looking ahead."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from requests_app import paging, services
from requests_app.models import CertificateRequest
from tests.conftest import make_csr


@pytest.fixture
def three_requests(ca):
    return [
        services.submit_request(
            profile="server", csr=make_csr(cn=f"p{i}.example.test"), requester_email="p@x.test"
        )
        for i in range(3)
    ]


def _rows():
    return CertificateRequest.objects.order_by("-submitted_at", "-pk")


def test_counted_rows_come_from_the_status_counters(three_requests, agent):
    """Unfiltered or filtered by status alone, the size is the counters'; else it is unknown."""
    services.approve_request(three_requests[0].public_id, agent=agent)
    count = paging.counted_rows
    with CaptureQueriesContext(connection) as queries:
        assert count({}, status_param="status") == 3
        assert count({"status": "pending"}, status_param="status") == 2
        assert count({"status": "complete"}, status_param="status") == 1
        assert count({"status": "rejected"}, status_param="status") == 0
        assert count({"o": "1", "p": "2"}, status_param="status", ignored={"o", "p"}) == 3
    assert not [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]
    assert count({"status": "bogus"}, status_param="status") is None
    assert count({"q": "p1"}, status_param="status") is None
    assert count({"status": "pending", "profile": "user"}, status_param="status") is None


def test_a_known_count_pages_like_django(three_requests, django_assert_num_queries):
    """Told its size, the paginator has page links and runs no query to know them."""
    paginator = paging.CountFreePaginator(_rows(), 2, count=3)
    with django_assert_num_queries(0):
        assert paginator.num_pages == 2
        assert list(paginator.page_range) == [1, 2]
    assert len(paginator.page(2).object_list) == 1


def test_without_a_count_a_page_looks_one_row_ahead(three_requests, django_assert_num_queries):
    """Each page is one query for a row more than it shows, and knows only its neighbours."""
    paginator = paging.CountFreePaginator(_rows(), 2)
    with django_assert_num_queries(1):
        first = paginator.look_ahead_page("1")
    assert [r.pk for r in first.object_list] == [r.pk for r in three_requests[:0:-1]]
    assert first.has_next() and not first.has_previous()
    assert first.next_page_number() == 2
    second = paginator.look_ahead_page(2)
    assert [r.pk for r in second.object_list] == [three_requests[0].pk]
    assert second.has_previous() and not second.has_next()
    assert second.previous_page_number() == 1
    with pytest.raises(TypeError):
        _ = paginator.count


@pytest.mark.parametrize(
    ("typed", "number"),
    [(None, 1), ("", 1), ("abc", 1), ("-3", 1), ("0", 1), ("7", 7), (str(10**30), paging.MAX_PAGE)],
)
def test_typed_page_numbers_are_clamped(typed, number):
    """Whatever is typed becomes a page between 1 and MAX_PAGE."""
    assert paging.page_number(typed) == number


def test_a_page_past_the_end_is_empty(three_requests):
    """A page number beyond the rows gives an empty page, not an error."""
    page = paging.CountFreePaginator(_rows(), 2).look_ahead_page("5")
    assert page.number == 5
    assert list(page.object_list) == []
    assert not page.has_next()
