"""Helpers shared by the test modules; fixtures live in tests/conftest.py.

csrs: CSRs made with cryptography or openssl. certs: CAs and certificates built by hand,
PEM files, `openssl verify` and pkilint. servers: a real SMTP server and portal processes.
concurrency: threads released at once. tls: real TLS handshakes. plugin_example: a
third-party delivery backend named by dotted path.
"""
