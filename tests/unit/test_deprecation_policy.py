"""The pytest configuration turns deprecations caused by app code into errors
(pyproject.toml, filterwarnings): these fail if those lines are dropped or stop matching."""

import warnings

import pytest
from litestar.exceptions import LitestarDeprecationWarning


def _warn_from(module: str, category: type[Warning], message: str = "old API") -> None:
    """Issue a warning attributed to `module`, as code in that module would."""
    code = compile("warnings.warn(message, category)", f"<{module}>", "exec")
    exec(code, {"__name__": module, "warnings": warnings, "category": category,
                "message": message})


@pytest.mark.parametrize("module", ["app", "app.jobs.driver", "app.web.pages"])
@pytest.mark.parametrize("category", [DeprecationWarning, PendingDeprecationWarning])
def test_a_deprecation_from_app_code_is_an_error(module, category):
    with pytest.raises(category):
        _warn_from(module, category)


def test_a_deprecation_from_other_code_is_only_reported():
    with pytest.warns(DeprecationWarning):
        _warn_from("apprise.plugins", DeprecationWarning)


def test_litestar_reports_on_app_code_from_its_own_modules_and_they_are_errors():
    with pytest.raises(LitestarDeprecationWarning):
        _warn_from("litestar._kwargs.kwargs_model", LitestarDeprecationWarning,
                   "[paths='/', handler='workspace'] query parameter 'image' declared using "
                   "deprecated inferred style")
    with pytest.raises(DeprecationWarning):
        _warn_from("litestar.params", DeprecationWarning,
                   "Deprecated 'query' parameter: Parameter(query='image')")
