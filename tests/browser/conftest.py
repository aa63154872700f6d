"""On a failed browser test, a screenshot of what the page showed: build/e2e/FAILED-<test>.png."""
import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.call_failed = report.failed
