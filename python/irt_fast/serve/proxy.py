"""Which HTTP proxy an upstream is reached through, read once from the environment.

``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``NO_PROXY`` (either case, lowercase winning, as
:func:`urllib.request.getproxies_environment` reads them) are resolved when the config is
loaded, not on every call: aiohttp's ``trust_env`` would look them up (and read ``~/.netrc``)
in a worker thread per request, two thread hand-offs that cost more CPU than the rest of a
forwarded call's client side. A proxy's credentials go in its URL
(``http://user:password@proxy:3128``); ``~/.netrc`` is never read, so no credential from it
can be sent to an upstream.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit
from urllib.request import proxy_bypass_environment


def env_proxies(environ: Mapping[str, str]) -> dict[str, str]:
    """The ``*_proxy`` variables by scheme (``no`` for ``NO_PROXY``).

    Args:
        environ: the environment.

    Returns:
        ``{scheme: proxy URL}``; a lowercase variable wins over its uppercase twin, an empty
        lowercase one removes it, and ``HTTP_PROXY`` is ignored in a CGI environment
        (``REQUEST_METHOD`` set), as urllib does.
    """
    out: dict[str, str] = {}
    for name, value in environ.items():
        if value and name.lower().endswith("_proxy"):
            out[name.lower()[:-6]] = value
    if "REQUEST_METHOD" in environ:
        out.pop("http", None)
    for name, value in environ.items():
        if name.endswith("_proxy") and name == name.lower():
            if value:
                out[name[:-6]] = value
            else:
                out.pop(name[:-6], None)
    return out


def proxy_for(url: str, environ: Mapping[str, str]) -> str | None:
    """The proxy URL to reach ``url`` through, or None (no proxy for its scheme, or its host
    is in ``NO_PROXY``)."""
    return pick_proxy(url, env_proxies(environ))


def pick_proxy(url: str, proxies: Mapping[str, str]) -> str | None:
    """:func:`proxy_for` with the environment's proxies already read (:func:`env_proxies`)."""
    parts = urlsplit(url)
    proxy = proxies.get(parts.scheme)
    if proxy is None or proxy_bypass_environment(parts.hostname or "", proxies):
        return None
    return proxy
