#!/usr/bin/python
"""Check, from a node, that the network endpoints a role is about to use answer."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dlstack_reachable
short_description: Check that a node reaches the endpoints (mirrors, proxies, indexes, directories) it will use
description:
  - For each endpoint, opens a TCP connection to its host and port (or, for C(file://) URLs,
    checks that the path is a directory this user can read), with a short timeout, and
    reports what failed in words an admin can act on - the name did not resolve, the
    connection was refused, nothing answered within the timeout.
  - An C(http(s)://) endpoint that the node's own proxy settings (C(https_proxy),
    C(http_proxy), C(no_proxy) in the module's environment) send through a proxy is checked
    at that proxy, as the client would connect. Set O(endpoints[].direct) for endpoints
    whose client is configured otherwise (APT's own proxy setting, say).
  - Reads only; changes nothing on the node. Several endpoints on the same host and port
    are tried once.
  - Fails, unless O(fail) is false, with one message that names O(who), every unreachable
    endpoint and its error.
options:
  endpoints:
    description: The endpoints to try.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: What the endpoint is, for the message (C(APT proxy), C(Debian mirror)).
        type: str
        required: true
      url:
        description: C(http://), C(https://) or C(file://) URL.
        type: str
        required: true
      direct:
        description: Connect to the URL's host even when the environment names a proxy.
        type: bool
        default: false
  timeout:
    description:
      - Seconds to wait for the connection. Name resolution may take twice that plus one
        second, so that one lost DNS packet, which the resolver sends again after 5 s by
        default, does not count as a failure. A name the resolver got no answer for at all
        (C(Temporary failure in name resolution) - a busy or briefly unreachable DNS server,
        which APT would ride out with its retries) is asked once more; a name that does not
        exist fails at once.
    type: float
    default: 5.0
  who:
    description: Prefix of the failure message, e.g. C(common on gpu01).
    type: str
    default: dlstack
  fail:
    description: Fail when an endpoint cannot be reached (else only report it).
    type: bool
    default: true
author: dlstack
"""

EXAMPLES = r"""
- name: Check that the node reaches its APT proxy
  dlstack_reachable:
    who: "common on {{ inventory_hostname }}"
    endpoints:
      - {name: APT proxy, url: "http://aptcache.example.org:3142", direct: true}
"""

RETURN = r"""
endpoints:
  description: One entry per endpoint given, in order.
  returned: always
  type: list
  elements: dict
  contains:
    name: {description: The endpoint's name, type: str}
    url: {description: The endpoint's URL, type: str}
    target: {description: What was tried (C(host:port), C(proxy host:port) or a path), type: str}
    reachable: {description: Whether it answered, type: bool}
    error: {description: Why not (empty when reachable), type: str}
unreachable:
  description: The entries of RV(endpoints) that were not reachable.
  returned: always
  type: list
  elements: dict
"""

import os
import socket
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DEFAULT_PORTS = {"http": 80, "https": 443}


def resolve(host: str, port: int, timeout: float,
            getaddrinfo: Callable[..., Any] = socket.getaddrinfo) -> list[Any]:
    """getaddrinfo bounded by ``timeout`` (the resolver's own retries can take much longer)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except Exception as exc:
            box["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise TimeoutError(f"name {host} not resolved within {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box["result"]


def try_tcp(host: str, port: int, timeout: float,
            getaddrinfo: Callable[..., Any] | None = None) -> str:
    """'' when a TCP connection to host:port opens within ``timeout``, else why not."""
    addresses: list[Any] = []
    for attempt in (1, 2):
        try:
            addresses = resolve(host, port, 2 * timeout + 1, getaddrinfo or socket.getaddrinfo)
            break
        except socket.gaierror as exc:
            # EAI_AGAIN: no answer from the DNS servers (not "no such name"): ask once more
            if exc.errno == socket.EAI_AGAIN and attempt == 1:
                continue
            return f"name not resolved ({host}: {exc.strerror or exc})"
        except TimeoutError as exc:
            return str(exc)
    last = ""
    for family, socktype, proto, _name, address in addresses:
        sock = socket.socket(family, socktype, proto)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
            return ""
        except ConnectionRefusedError:
            last = f"connection refused ({host}:{port})"
        except TimeoutError:
            last = f"no answer within {timeout:g} s ({host}:{port})"
        except OSError as exc:
            last = f"{exc.strerror or exc} ({host}:{port})"
        finally:
            sock.close()
    return last or f"no address for {host}"


def try_path(path: str) -> str:
    """'' when ``path`` is a directory this user can list and enter, else why not."""
    if not os.path.exists(path):
        return f"{path} does not exist"
    if not os.path.isdir(path):
        return f"{path} is not a directory"
    if not os.access(path, os.R_OK | os.X_OK):
        return f"{path} is not readable by uid {os.getuid()}"
    return ""


def proxy_for(url: str, environ: Mapping[str, str] | None = None) -> str:
    """The proxy URL a standard client would use for ``url`` under ``environ`` (default: this
    process's environment), or '' (the ``<scheme>_proxy`` variables, lower case first, and
    ``no_proxy``, read as urllib reads them)."""
    env = os.environ if environ is None else environ
    scheme = urllib.parse.urlsplit(url).scheme
    proxy = env.get(f"{scheme}_proxy") or env.get(f"{scheme.upper()}_PROXY") or ""
    no_proxy = env.get("no_proxy") or env.get("NO_PROXY") or ""
    host = urllib.parse.urlsplit(url).hostname or ""
    if proxy and no_proxy and urllib.request.proxy_bypass_environment(host, {"no": no_proxy}):
        return ""
    return proxy


def target_of(url: str, direct: bool, environ: Mapping[str, str] | None = None) -> tuple[str, Any, str]:
    """('tcp', (host, port), label) or ('path', path, label) for ``url``; ValueError if unusable."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        path = urllib.parse.unquote(parts.path)
        return "path", path, path
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"not an http(s):// or file:// URL: {url!r}")
    proxy = "" if direct else proxy_for(url, environ)
    if proxy:
        via = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
        host, port = via.hostname or "", via.port or DEFAULT_PORTS.get(via.scheme, 80)
        return "tcp", (host, port), f"proxy {host}:{port}"
    port = parts.port or DEFAULT_PORTS[parts.scheme]
    return "tcp", (parts.hostname, port), f"{parts.hostname}:{port}"


def check(endpoints: list[dict[str, Any]], timeout: float,
          environ: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Try every endpoint once per distinct target; one result per endpoint, in order."""
    tried: dict[tuple[str, Any], str] = {}
    results = []
    for endpoint in endpoints:
        url = endpoint["url"]
        try:
            kind, where, label = target_of(url, bool(endpoint.get("direct")), environ)
        except ValueError as exc:
            results.append({"name": endpoint["name"], "url": url, "target": "", "reachable": False, "error": str(exc)})
            continue
        key = (kind, where)
        if key not in tried:
            tried[key] = try_path(where) if kind == "path" else try_tcp(where[0], where[1], timeout)
        error = tried[key]
        results.append({"name": endpoint["name"], "url": url, "target": label, "reachable": not error, "error": error})
    return results


def message(who: str, unreachable: list[dict[str, Any]]) -> str:
    return f"{who}: cannot reach " + "; ".join(f"the {r['name']} {r['url']}: {r['error']}" for r in unreachable)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "endpoints": {"type": "list", "elements": "dict", "required": True, "options": {
                "name": {"type": "str", "required": True},
                "url": {"type": "str", "required": True},
                "direct": {"type": "bool", "default": False},
            }},
            "timeout": {"type": "float", "default": 5.0},
            "who": {"type": "str", "default": "dlstack"},
            "fail": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    results = check(module.params["endpoints"], module.params["timeout"])
    unreachable = [r for r in results if not r["reachable"]]
    if unreachable and module.params["fail"]:
        module.fail_json(msg=message(module.params["who"], unreachable), endpoints=results, unreachable=unreachable)
    module.exit_json(changed=False, endpoints=results, unreachable=unreachable)


if __name__ == "__main__":
    main()
