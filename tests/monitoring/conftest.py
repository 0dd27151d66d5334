"""The monitors leave out rows recorded in breaks, and these tests record rows today: the shared
district's calendar is fixed to 2026–27, so on a day outside its terms (the winter break, the
summer) it is moved to put today in the middle of its autumn term."""

from __future__ import annotations

import pytest

from tests.conftest import put_today_in_term


@pytest.fixture
def district(district):
    put_today_in_term(district)
    return district
