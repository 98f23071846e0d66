"""Every link that leaves the site comes from one setting, SITE_URL (scheme, host, port): core/links.py."""

from __future__ import annotations

import pytest

from agencybilling.env import ConfigError, site_url_from_env
from core.links import absolute_url, site_origin


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "https://localhost"),  # the default
        ("http://localhost:8123", "http://localhost:8123"),
        ("http://localhost:8123/", "http://localhost:8123"),
        ("https://LOCALHOST", "https://localhost"),
    ],
)
def test_site_url_is_read_and_normalised(monkeypatch, value, expected):
    monkeypatch.setenv("SITE_URL", value)
    assert site_url_from_env("SITE_URL", base_domain="localhost", default="https://localhost") == expected


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("ftp://localhost", "must look like"),
        ("localhost:8000", "must look like"),
        ("http://billing.example.com", "host must be BASE_DOMAIN"),
        ("http://localhost:8000/app", "scheme, a host and a port only"),
        ("http://localhost:99999", "invalid port"),
    ],
)
def test_a_malformed_site_url_is_refused_with_one_clear_line(monkeypatch, value, says):
    monkeypatch.setenv("SITE_URL", value)
    with pytest.raises(ConfigError, match=says):
        site_url_from_env("SITE_URL", base_domain="localhost", default="https://localhost")


@pytest.mark.parametrize("legacy", ["SITE_SCHEME", "SITE_PORT_SUFFIX"])
def test_the_settings_it_replaces_are_refused_rather_than_ignored(monkeypatch, legacy):
    monkeypatch.setenv(legacy, ":8000")
    with pytest.raises(ConfigError, match=f"{legacy} is replaced by SITE_URL"):
        site_url_from_env("SITE_URL", base_domain="localhost", default="https://localhost")


def test_links_for_the_console_and_for_an_agency_share_scheme_and_port(settings):
    settings.SITE_URL = "http://localhost:8123"
    assert site_origin() == "http://localhost:8123"
    assert absolute_url("/portal/", agency="demo") == "http://demo.localhost:8123/portal/"
    assert absolute_url("/login/") == "http://localhost:8123/login/"
    settings.SITE_URL = "https://localhost"
    assert absolute_url("/portal/", agency="demo") == "https://demo.localhost/portal/"
    with pytest.raises(ValueError):
        absolute_url("portal/")
