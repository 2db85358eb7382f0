"""Unit tests for plugins/modules/dlstack_reachable.py: real sockets on loopback only."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import plugin_loader
import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "plugins" / "modules" / "dlstack_reachable.py"
mod = plugin_loader.load_by_path("dlstack_reachable", MODULE)


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that accepts connections."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        yield sock.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_listening_port_is_reachable(listener: int) -> None:
    [result] = mod.check([{"name": "APT proxy", "url": f"http://127.0.0.1:{listener}"}], 2)
    assert result == {"name": "APT proxy", "url": f"http://127.0.0.1:{listener}",
                      "target": f"127.0.0.1:{listener}", "reachable": True, "error": ""}


def test_a_closed_port_is_refused(closed_port: int) -> None:
    [result] = mod.check([{"name": "APT proxy", "url": f"http://127.0.0.1:{closed_port}/"}], 2)
    assert not result["reachable"]
    assert result["error"] == f"connection refused (127.0.0.1:{closed_port})"


def test_a_name_that_does_not_resolve() -> None:
    # names under .invalid never resolve (RFC 6761)
    [result] = mod.check([{"name": "APT proxy", "url": "http://no-such-proxy.invalid:3142"}], 5)
    assert not result["reachable"]
    assert result["error"].startswith("name not resolved (no-such-proxy.invalid")


def test_a_silent_endpoint_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    class Silent:
        def __init__(self, *args: Any) -> None:
            self.timeout = None

        def settimeout(self, value: float) -> None:
            self.timeout = value

        def connect(self, address: Any) -> None:
            raise TimeoutError("timed out")

        def close(self) -> None:
            pass

    monkeypatch.setattr(mod.socket, "socket", Silent)
    assert mod.try_tcp("127.0.0.1", 9, 0.5) == "no answer within 0.5 s (127.0.0.1:9)"


def fake_getaddrinfo(errors: list[int], port: int) -> tuple[list[int], Any]:
    """A getaddrinfo that raises gaierror with each of ``errors`` in turn, then resolves to
    127.0.0.1:``port``; the list it returns counts the calls."""
    calls: list[int] = []

    def getaddrinfo(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) <= len(errors):
            code = errors[len(calls) - 1]
            raise socket.gaierror(code, {socket.EAI_AGAIN: "Temporary failure in name resolution",
                                         socket.EAI_NONAME: "Name or service not known"}[code])
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    return calls, getaddrinfo


def test_a_resolver_without_answer_is_asked_once_more(listener: int) -> None:
    # a busy DNS server (EAI_AGAIN) failed a whole node's converge here; apt would have retried
    calls, getaddrinfo = fake_getaddrinfo([socket.EAI_AGAIN], listener)
    assert mod.try_tcp("deb.debian.org", listener, 2, getaddrinfo=getaddrinfo) == ""
    assert len(calls) == 2


def test_a_resolver_without_answer_twice_fails(listener: int) -> None:
    calls, getaddrinfo = fake_getaddrinfo([socket.EAI_AGAIN, socket.EAI_AGAIN], listener)
    error = mod.try_tcp("deb.debian.org", listener, 2, getaddrinfo=getaddrinfo)
    assert error == "name not resolved (deb.debian.org: Temporary failure in name resolution)"
    assert len(calls) == 2


def test_a_name_that_does_not_exist_is_not_asked_again(listener: int) -> None:
    calls, getaddrinfo = fake_getaddrinfo([socket.EAI_NONAME], listener)
    error = mod.try_tcp("aptcahce", listener, 2, getaddrinfo=getaddrinfo)
    assert error == "name not resolved (aptcahce: Name or service not known)"
    assert len(calls) == 1


def test_a_resolver_that_hangs_is_cut_at_the_timeout() -> None:
    def hang(*args: Any, **kwargs: Any) -> Any:
        import time
        time.sleep(5)

    with pytest.raises(TimeoutError, match=r"not resolved within 0\.2 s"):
        mod.resolve("slow.example", 80, 0.2, getaddrinfo=hang)


def test_the_default_ports(listener: int) -> None:
    assert mod.target_of("http://deb.debian.org/debian", True) == ("tcp", ("deb.debian.org", 80), "deb.debian.org:80")
    assert mod.target_of("https://pypi.org/simple", True) == ("tcp", ("pypi.org", 443), "pypi.org:443")
    assert mod.target_of("file:///var/lib/dlstack/wheelhouse", True) == (
        "path", "/var/lib/dlstack/wheelhouse", "/var/lib/dlstack/wheelhouse")


def test_an_unusable_url_is_reported() -> None:
    [result] = mod.check([{"name": "mirror", "url": "ftp://ftp.example.org/debian"}], 1)
    assert result["error"] == "not an http(s):// or file:// URL: 'ftp://ftp.example.org/debian'"


def test_directories(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    assert mod.try_path(str(tmp_path)) == ""
    assert mod.try_path(str(tmp_path / "missing")) == f"{tmp_path}/missing does not exist"
    assert mod.try_path(str(tmp_path / "file")) == f"{tmp_path}/file is not a directory"


def test_the_environment_proxy_is_what_is_tried(listener: int) -> None:
    env = {"https_proxy": f"http://127.0.0.1:{listener}", "no_proxy": "localhost,.internal"}
    assert mod.target_of("https://pypi.org/simple", False, env) == (
        "tcp", ("127.0.0.1", listener), f"proxy 127.0.0.1:{listener}")
    # no_proxy and direct both bypass it
    assert mod.target_of("https://pypi.internal/simple", False, env)[1] == ("pypi.internal", 443)
    assert mod.target_of("https://pypi.org/simple", True, env)[1] == ("pypi.org", 443)
    # upper case is read too; http proxies do not apply to https URLs
    assert mod.proxy_for("https://pypi.org", {"HTTPS_PROXY": "http://p:3128"}) == "http://p:3128"
    assert mod.proxy_for("https://pypi.org", {"http_proxy": "http://p:3128"}) == ""


def test_each_target_is_tried_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, int]] = []

    def fake(host: str, port: int, timeout: float) -> str:
        calls.append((host, port))
        return "connection refused"

    monkeypatch.setattr(mod, "try_tcp", fake)
    results = mod.check([{"name": "Debian mirror", "url": "http://m.example/debian"},
                         {"name": "Debian security mirror", "url": "http://m.example/debian-security"}], 1)
    assert calls == [("m.example", 80)]
    assert [r["error"] for r in results] == ["connection refused"] * 2


def test_the_module_fails_with_one_message_naming_each_endpoint(tmp_path: Path, closed_port: int) -> None:
    rc, out = plugin_loader.run_module(MODULE, tmp_path, {
        "who": "common on gpu01", "timeout": 2,
        "endpoints": [{"name": "APT proxy", "url": "http://no-such-proxy.invalid:3142", "direct": True},
                      {"name": "wheelhouse", "url": f"file://{tmp_path}/none"}]})
    assert rc == 1 and out["failed"]
    assert out["msg"].startswith("common on gpu01: cannot reach the APT proxy http://no-such-proxy.invalid:3142: "
                                 "name not resolved (no-such-proxy.invalid")
    assert out["msg"].endswith(f"; the wheelhouse file://{tmp_path}/none: {tmp_path}/none does not exist")
    assert len(out["unreachable"]) == 2


def test_the_module_passes_and_reports(tmp_path: Path, listener: int) -> None:
    rc, out = plugin_loader.run_module(MODULE, tmp_path, {
        "endpoints": [{"name": "APT proxy", "url": f"http://127.0.0.1:{listener}"}], "_ansible_check_mode": True})
    assert rc == 0 and not out["changed"]
    assert out["unreachable"] == [] and out["endpoints"][0]["reachable"]
