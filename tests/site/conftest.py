"""The site's tests build workflows as the workflow tests do."""

from tests.workflows.conftest import make_workflow  # noqa: F401 (a fixture)
