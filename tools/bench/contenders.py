"""The contenders of `make bench-gateway`: how each proxy is configured and started.

Every proxy gets one worker (thread or process), listens on 127.0.0.1 and forwards to the same
backend over HTTP/1.1 with upstream keep-alive. Configurations are written into the run's work
directory; nothing is read from or written to the system's own configuration.
"""

import json
import os
import subprocess
import textwrap
from dataclasses import dataclass, field


@dataclass
class Contender:
    """One row of the table: the command that starts it (none for the backend itself)."""

    name: str
    group: str  # "floor", "proxies", "atrium" or "tls"
    argv: list = field(default_factory=list)  # with {port} and {admin} to fill in
    path: str = "/"
    token: str = ""  # bearer token sent with every request
    tls: bool = False
    env: dict = field(default_factory=dict)


def nginx_conf(work, name, servers):
    """An nginx of the run: one worker, no access log, everything under `work`."""
    return textwrap.dedent(f"""\
        worker_processes 1;
        daemon off;
        pid {work}/{name}.pid;
        error_log {work}/{name}.log warn;
        events {{ worker_connections 4096; }}
        http {{
          access_log off;
          client_body_temp_path {work}; proxy_temp_path {work}; fastcgi_temp_path {work};
          uwsgi_temp_path {work}; scgi_temp_path {work};
          keepalive_requests 1000000;
        """) + textwrap.indent(textwrap.dedent(servers), "  ") + "}\n"


def nginx_proxy_conf(work, port, backend, tls=None):
    """nginx as a reverse proxy: upstream keep-alive; TLS termination with `tls`."""
    listen = f"127.0.0.1:{port}"
    ssl = ""
    if tls:
        listen += " ssl"
        ssl = f"ssl_certificate {tls[0]}; ssl_certificate_key {tls[1]};"
    return nginx_conf(work, f"nginx-{port}", f"""\
        upstream backend {{ server 127.0.0.1:{backend}; keepalive 64; keepalive_requests 1000000; }}
        server {{
          listen {listen};
          {ssl}
          location / {{ proxy_pass http://backend; proxy_http_version 1.1;
                        proxy_set_header Connection ""; }}
        }}
        """)


def backend_conf(work, port):
    """The backend every contender forwards to: `200 ok` on every path."""
    return nginx_conf(work, "backend", f"""\
        server {{ listen 127.0.0.1:{port}; location / {{ return 200 "ok\\n"; }} }}
        """)


def haproxy_conf(port, backend):
    """HAProxy in HTTP mode: one thread, connection reuse to the backend."""
    return textwrap.dedent(f"""\
        global
          nbthread 1
          log stderr format raw local0 err
        defaults
          mode http
          timeout connect 5s
          timeout client 30s
          timeout server 30s
          http-reuse always
        frontend bench
          bind 127.0.0.1:{port}
          default_backend backend
        backend backend
          server b 127.0.0.1:{backend}
        """)


def envoy_conf(port, backend):
    """Envoy: one listener, one static cluster, the router filter; its defaults otherwise."""
    return textwrap.dedent(f"""\
        static_resources:
          listeners:
          - address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
            filter_chains:
            - filters:
              - name: envoy.filters.network.http_connection_manager
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                  stat_prefix: bench
                  route_config:
                    virtual_hosts:
                    - name: all
                      domains: ["*"]
                      routes: [{{match: {{prefix: "/"}}, route: {{cluster: backend}}}}]
                  http_filters:
                  - name: envoy.filters.http.router
                    typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
          clusters:
          - name: backend
            type: STATIC
            load_assignment:
              cluster_name: backend
              endpoints:
              - lb_endpoints:
                - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {backend}}}}}}}
        """)


def atrium_routes(backend, keys, redis_port):
    """The GatewayRoute the Atrium contenders share: one rule per feature, chosen by path."""
    # JSON strings are YAML scalars: the PEM keys need no indenting.
    rsa_pub, ec_pub, hmac = (json.dumps(keys[k]) for k in ("rsa_pub", "ec_pub", "hmac"))

    def jwt(provider, secret_key):
        return (f"auth: {{jwt: {{providers: [{{name: {provider}, jwks: {{secretRef: "
                f"{{name: keys, key: {secret_key}}}}}, forwardClaims: "
                f"[{{claim: sub, header: x-user-id}}]}}]}}}}")

    return textwrap.dedent(f"""\
        apiVersion: v1
        kind: Secret
        metadata: {{name: keys}}
        stringData:
          hmac: {hmac}
          rsa: {rsa_pub}
          ec: {ec_pub}
        ---
        apiVersion: atrium.dev/v1alpha1
        kind: Microservice
        metadata: {{name: bench}}
        spec: {{ports: [{{name: http, port: {backend}}}], endpoints: [{{address: 127.0.0.1}}]}}
        ---
        apiVersion: atrium.dev/v1alpha1
        kind: GatewayRoute
        metadata: {{name: bench}}
        spec:
          rules:
          - {{name: plain, backends: [{{microservice: bench}}]}}
          - name: rewrite
            matches: [{{path: {{type: Template, value: "/t/users/{{id}}"}}}}]
            rewrite: {{type: Template, value: "/users/{{id}}"}}
            backends: [{{microservice: bench}}]
          - name: hs256
            matches: [{{path: {{type: PathPrefix, value: /hs}}}}]
            backends: [{{microservice: bench}}]
            {jwt("hs", "hmac")}
          - name: rs256
            matches: [{{path: {{type: PathPrefix, value: /rs}}}}]
            backends: [{{microservice: bench}}]
            {jwt("rs", "rsa")}
          - name: es256
            matches: [{{path: {{type: PathPrefix, value: /es}}}}]
            backends: [{{microservice: bench}}]
            {jwt("es", "ec")}
          - name: local-limit
            matches: [{{path: {{type: PathPrefix, value: /local}}}}]
            backends: [{{microservice: bench}}]
            {jwt("hs", "hmac")}
            rateLimit: {{requests: 1000000000, period: 1s, key: {{type: Claim, name: sub}}}}
          - name: global-limit
            matches: [{{path: {{type: PathPrefix, value: /global}}}}]
            backends: [{{microservice: bench}}]
            {jwt("hs", "hmac")}
            rateLimit: {{requests: 1000000000, period: 1s, key: {{type: Claim, name: sub}}, scope: Global, redis: {{url: "redis://127.0.0.1:{redis_port}/0"}}}}
        """)


def make_keys(work, atrium):
    """An HMAC secret, RSA and EC key pairs, a self-signed certificate, and a token for each."""
    def run(*argv):
        return subprocess.run(argv, check=True, capture_output=True, text=True).stdout

    hmac = "bench-hmac-secret-0123456789abcdef0123456789"
    with open(f"{work}/hmac.key", "w") as f:
        f.write(hmac)
    run("openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
        "-out", f"{work}/rsa.key")
    run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-out", f"{work}/ec.key")
    # A CA and a server certificate it signed (a self-signed leaf is not a valid chain).
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run("openssl", "req", "-x509", *ec, "-days", "2", "-subj", "/CN=atrium bench CA",
        "-keyout", f"{work}/ca.key", "-out", f"{work}/ca.crt")
    run("openssl", "req", *ec, "-subj", "/CN=localhost", "-keyout", f"{work}/tls.key",
        "-out", f"{work}/tls.csr")
    with open(f"{work}/tls.ext", "w") as f:
        f.write("basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", f"{work}/tls.csr", "-CA", f"{work}/ca.crt",
        "-CAkey", f"{work}/ca.key", "-CAcreateserial", "-days", "2", "-extfile",
        f"{work}/tls.ext", "-out", f"{work}/tls.crt")
    keys = {
        "hmac": hmac,
        "rsa_pub": run("openssl", "pkey", "-in", f"{work}/rsa.key", "-pubout"),
        "ec_pub": run("openssl", "pkey", "-in", f"{work}/ec.key", "-pubout"),
        "tls": (f"{work}/tls.crt", f"{work}/tls.key"),
        "ca": f"{work}/ca.crt",
    }
    for name, key in (("hs", "hmac.key"), ("rs", "rsa.key"), ("es", "ec.key")):
        keys[f"{name}_token"] = run(atrium, "token", "--key-file", f"{work}/{key}",
                                    "--sub", "bench", "--ttl", "2h").strip()
    return keys


def write(path, text):
    """Write a configuration file of the run."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
