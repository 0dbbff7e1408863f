"""A real nginx on 127.0.0.1 in front of a portal under test, as an operator would run it:
it proxies to the portal, appends the client's address to X-Forwarded-For and, with TLS and a
client CA, passes the client certificate it verified in a header.

    with Nginx(upstream=live_server.url, tmp=tmp_path) as proxy:
        requests.get(proxy.url + "/healthz")

nginx must be installed (Debian's `nginx`; `.ci/run` installs it). It runs as the current user
with every path (pid, logs, temp dirs) under `tmp`, so it needs no root and leaves nothing.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

from .servers import free_port

#: The header nginx fills with the client certificate it verified (URL-escaped PEM), and the
#: one with its verdict (SUCCESS, FAILED:reason or NONE). Django sees them as HTTP_X_SSL_….
CLIENT_CERT_HEADER = "X-SSL-Client-Cert"
CLIENT_VERIFY_HEADER = "X-SSL-Client-Verify"


def nginx_binary() -> str | None:
    return shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )


class Nginx:
    """nginx listening on a free port of 127.0.0.1 and proxying to `upstream`.

    tls=(fullchain, key) serves https; client_ca additionally asks for a client certificate
    (`ssl_verify_client optional`) and passes it upstream. forwarded_for="append" is the usual
    `$proxy_add_x_forwarded_for`; "replace" sets it to `$remote_addr` only (what an operator
    does at the edge so that a client cannot prepend forged hops)."""

    def __init__(
        self,
        *,
        upstream: str,
        tmp: Path,
        tls: tuple[Path, Path] | None = None,
        client_ca: Path | None = None,
        forwarded_for: str = "append",
        extra_server_config: str = "",
    ):
        self.port = free_port()
        self.tmp = Path(tmp) / f"nginx-{self.port}"
        self.upstream = upstream.rstrip("/")
        self.tls = tls
        self.client_ca = client_ca
        self.forwarded_for = forwarded_for
        self.extra = extra_server_config
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def config(self) -> str:
        root = self.tmp
        upstream = urlparse(self.upstream)
        xff = "$proxy_add_x_forwarded_for" if self.forwarded_for == "append" else "$remote_addr"
        listen = f"listen 127.0.0.1:{self.port}{' ssl' if self.tls else ''};"
        tls = client_headers = ""
        if self.tls:
            fullchain, key = self.tls
            tls = f"ssl_certificate {fullchain}; ssl_certificate_key {key};"
            if self.client_ca:
                tls += (
                    f" ssl_client_certificate {self.client_ca}; ssl_verify_client optional;"
                    " ssl_verify_depth 3;"
                )
                # In the location, beside the other proxy_set_header lines: a level that sets
                # any header inherits none of the enclosing level's proxy_set_header.
                client_headers = (
                    f"proxy_set_header {CLIENT_CERT_HEADER} $ssl_client_escaped_cert;"
                    f" proxy_set_header {CLIENT_VERIFY_HEADER} $ssl_client_verify;"
                )
        return f"""
daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log {root}/access.log;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    server {{
        {listen}
        server_name _;
        {tls}
        location / {{
            proxy_pass http://{upstream.hostname}:{upstream.port};
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For {xff};
            proxy_set_header X-Forwarded-Proto $scheme;
            {client_headers}
            {self.extra}
        }}
    }}
}}
"""

    def start(self) -> Nginx:
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is not installed (apt-get install nginx)")
        self.tmp.mkdir(parents=True, exist_ok=True)
        conf = self.tmp / "nginx.conf"
        conf.write_text(self.config())
        self._process = subprocess.Popen(
            [binary, "-c", str(conf), "-p", str(self.tmp), "-e", str(self.tmp / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"nginx exited: {self._process.stderr.read().decode()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("nginx did not start listening within 10 s")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
