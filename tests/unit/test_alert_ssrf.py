"""The SSRF guard's judgement of URLs and addresses (no traffic is sent by these tests)."""

from __future__ import annotations

import ipaddress

import pytest

from logflow.alerting.ssrf import (
    Allowlist,
    UnsafeURL,
    check_url,
    embedded_ipv4,
    forbidden_reason,
    parse_allowlist,
)

NOTHING = Allowlist()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://127.8.9.10:9000/",
        "http://localhost/",
        "http://LOCALHOST./x",
        "http://[::1]/",
        "http://0.0.0.0/",
        "http://[::]/",
        "http://10.0.0.5/",
        "http://172.16.3.4/",
        "http://192.168.1.1/",  # private
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",  # link-local, cloud metadata
        "http://100.64.0.1/",  # CGNAT
        "http://224.0.0.1/",
        "http://239.255.255.250/",
        "http://[ff02::1]/",  # multicast
        "http://[fc00::1]/",
        "http://[fd12:3456::1]/",  # unique local
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/",
        "http://[::ffff:169.254.169.254]/",  # mapped
        "http://[2002:7f00:1::]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://[::10.0.0.1]/",  # 6to4, NAT64, compat
        "http://2130706433/",
        "http://0x7f000001/",
        "http://0177.0.0.1/",
        "http://127.1/",
        "http://0x7f.1/",
        "http://017700000001/",
        "http://0xA9FEA9FE/",
        "http://3232235777/",  # numeric spellings
        "http://198.18.0.1/",
        "http://192.0.2.1/",
        "http://240.0.0.1/",
        "http://255.255.255.255/",
    ],
)
def test_private_and_obfuscated_targets_are_refused(url: str) -> None:
    with pytest.raises(UnsafeURL):
        check_url(url, NOTHING)


@pytest.mark.parametrize(
    "url, reason",
    [
        ("ftp://example.com/", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("gopher://example.com/", "only http and https"),
        ("javascript:alert(1)", "only http and https"),
        ("http://user:pw@example.com/", "credentials"),
        ("http://example.com@127.0.0.1/", "credentials"),
        ("http:///nohost", "no host"),
        ("http://[::1/", "invalid URL"),
        ("http://[fe80::1%25eth0]/", "invalid host"),
    ],
)
def test_malformed_and_non_http_urls_are_refused(url: str, reason: str) -> None:
    with pytest.raises(UnsafeURL, match=reason):
        check_url(url, NOTHING)


def test_public_literals_pass_and_keep_the_checked_address() -> None:
    target = check_url("https://93.184.216.34:8443/x?y=1", NOTHING)
    assert target.addresses == (ipaddress.ip_address("93.184.216.34"),)
    assert (target.scheme, target.port, target.host_header) == ("https", 8443, "93.184.216.34:8443")
    assert check_url("http://[2606:4700::1111]/", NOTHING).host_header == "[2606:4700::1111]"


def test_every_resolved_address_is_checked() -> None:
    # "localhost" resolves to loopback only; one bad answer is enough to refuse.
    with pytest.raises(UnsafeURL, match="loopback"):
        check_url("http://localhost:8080/hook", NOTHING)


def test_numeric_spellings_are_refused_even_when_the_address_is_allowed() -> None:
    allow = parse_allowlist("127.0.0.1")
    assert check_url("http://127.0.0.1:9/", allow).addresses
    with pytest.raises(UnsafeURL, match="non-canonical"):
        check_url("http://2130706433:9/", allow)


def test_allowlist_by_cidr_and_by_host_name() -> None:
    allow = parse_allowlist(" 127.0.0.0/30 , localhost, [::1], hooks.internal.example ")
    assert check_url("http://127.0.0.2/", allow).addresses == (ipaddress.ip_address("127.0.0.2"),)
    assert check_url("http://localhost:1/", allow).host == "localhost"
    assert check_url("http://[::1]:1/", allow)
    with pytest.raises(UnsafeURL):
        check_url("http://127.0.0.5/", allow)  # outside the CIDR
    with pytest.raises(UnsafeURL):
        check_url("http://10.0.0.1/", allow)


@pytest.mark.parametrize("entry", ["http://x", "a b", "user@host", "0x7f000001", "10.0.0.0/33"])
def test_bad_allowlist_entries_are_rejected_by_name(entry: str) -> None:
    with pytest.raises(ValueError, match="allowlist entry"):
        parse_allowlist(entry)


def test_embedded_ipv4_forms() -> None:
    v6 = ipaddress.IPv6Address
    assert embedded_ipv4(v6("::ffff:10.1.2.3")) == ipaddress.IPv4Address("10.1.2.3")
    assert embedded_ipv4(v6("2002:c0a8:0101::1")) == ipaddress.IPv4Address("192.168.1.1")
    assert embedded_ipv4(v6("64:ff9b::808:808")) == ipaddress.IPv4Address("8.8.8.8")
    assert embedded_ipv4(v6("2606:4700::1111")) is None
    # A NAT64 address of a public IPv4 address is public.
    assert forbidden_reason(v6("64:ff9b::808:808")) is None
    assert forbidden_reason(ipaddress.ip_address("8.8.8.8")) is None
    assert "link-local" in (forbidden_reason(ipaddress.ip_address("169.254.169.254")) or "")
    assert "CGNAT" in (forbidden_reason(ipaddress.ip_address("100.100.100.200")) or "")
