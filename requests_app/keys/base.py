"""What a key backend does: it keeps the private keys of CAs (and of their delegated OCSP
responders) and signs with them. It never hands a private key object to its callers."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from cryptography import x509

from .. import pki

if TYPE_CHECKING:
    from ..models import CertificateAuthority


class CAKeyError(pki.CAError):
    """The CA key is missing or cannot be opened with the configured secret."""


class Rewrapped(NamedTuple):
    """One stored key after rewrap_keys: how it was protected, and how it is now (None when
    it was left as it was)."""

    backend: str
    name: str
    before: str
    after: str | None


class NewKey:
    """A key a backend made or was given for a new CA, before the backend stores it.

    Callers see its public half and its type; what the backend keeps in `_secret` (a key
    object, a token handle) is the backend's own business.
    """

    __slots__ = ("_secret", "key_type", "public_key")

    def __init__(self, public_key: pki.PublicKey, secret: object):
        self.public_key = public_key
        self.key_type = pki.key_type_of(public_key)
        self._secret = secret

    def __repr__(self) -> str:
        return f"<NewKey {self.key_type}>"


class KeyBackend:
    """Base of the backends named in CA_KEY_BACKENDS.

    A subclass lists the OPTIONS it accepts in `options` (anything else is refused at
    start-up) and fills in every hook below. Each hook that signs takes an unsigned builder
    from `pki` and returns the signed object.
    """

    #: The OPTIONS keys this backend accepts.
    options: tuple[str, ...] = ()

    def __init__(self, alias: str, **options):
        self.alias = alias

    def close(self) -> None:
        """Let go of what the backend holds open (sessions, handles); it may be used again."""

    # --- command-line options of init_ca and import_ca ----------------------------------

    @classmethod
    def add_arguments(cls, group) -> None:
        """Add this backend's own options to init_ca and import_ca (an argparse group)."""

    @classmethod
    def key_options(cls, options: dict) -> dict:
        """The keyword options of generate_key/import_key, from the commands' parsed options
        (a CAKeyError for a bad value)."""
        return {}

    @classmethod
    def names_key(cls, key_options: dict) -> bool:
        """Whether key_options (from key_options()) name a key the backend already holds:
        import_ca without --key then imports that key rather than completing a pending CA."""
        return False

    def check_key_options(self, ca: CertificateAuthority, **options) -> None:
        """CAKeyError unless options (from key_options()) fit the key the backend holds for
        ca (import_ca --certificate completing a pending CA names where its key is)."""

    def _missing(self, hook: str):
        return NotImplementedError(f"{type(self).__name__} does not implement {hook}()")

    # --- custody of a new CA's key ---------------------------------------------------

    def generate_key(self, key_type: str, **options) -> NewKey:
        """Make a new key of key_type (a CA's, or its OCSP responder's); options are the
        backend's own, from key_options() (none for an OCSP responder)."""
        raise self._missing("generate_key")

    def import_key(self, data: bytes | None, passphrase: str | None, **options) -> NewKey:
        """Take a CA key given as PEM or DER (encrypted under passphrase, or not), or one the
        backend already holds, named by options (from key_options())."""
        raise self._missing("import_key")

    def sign_with_new_key(
        self, key: NewKey, builder: x509.CertificateBuilder | x509.CertificateSigningRequestBuilder
    ) -> x509.Certificate | x509.CertificateSigningRequest:
        """Sign a builder with a key not stored yet: a new root's own certificate, or the CSR
        of a subordinate CA for its root (init_ca --csr-only)."""
        raise self._missing("sign_with_new_key")

    def key_reference(self, cert: x509.Certificate, key: NewKey | None = None) -> str:
        """What the CA row keeps (its key_filename) to find the key of this CA certificate
        (key: the NewKey it was made or imported with). Never a secret."""
        raise self._missing("key_reference")

    def pending_key_reference(self, public_key: pki.PublicKey, key: NewKey | None = None) -> str:
        """What a pending CA's row keeps (its key_filename) for a key made before the CA has
        a certificate (init_ca --csr-only); the CA keeps it once its certificate arrives
        (key: the NewKey, where the reference depends on more than the public key)."""
        raise self._missing("pending_key_reference")

    def store_key(self, ca: CertificateAuthority, key: NewKey) -> None:
        """Keep the new key under ca.key_filename; called last in the CA's transaction."""
        raise self._missing("store_key")

    def key_location(self, ca: CertificateAuthority) -> str:
        """Where the CA's key is kept, for an administrator to read (a path, a token label)."""
        raise self._missing("key_location")

    # --- signing with a CA's key -------------------------------------------------------

    def check_usable(self, ca: CertificateAuthority) -> None:
        """Raise CAKeyError unless the CA's key can sign now (/healthz, before approving)."""
        raise self._missing("check_usable")

    def sign_certificate(
        self, ca: CertificateAuthority, builder: x509.CertificateBuilder
    ) -> x509.Certificate:
        """Sign a certificate the CA issues."""
        raise self._missing("sign_certificate")

    def sign_crl(
        self, ca: CertificateAuthority, builder: x509.CertificateRevocationListBuilder
    ) -> x509.CertificateRevocationList:
        """Sign one of the CA's CRLs."""
        raise self._missing("sign_crl")

    # --- OCSP: the delegated responder, or the CA itself -----------------------------

    def store_ocsp_responder(
        self, ca: CertificateAuthority, key: NewKey, cert: x509.Certificate
    ) -> None:
        """Keep a delegated responder (a key from generate_key, the certificate the CA signed
        for it) in place of the CA's previous one; called last in its transaction."""
        raise self._missing("store_ocsp_responder")

    def sign_ocsp_response(self, ca: CertificateAuthority, builder) -> bytes:
        """Name the responder in an OCSP answer and sign it (DER): with the CA's delegated
        responder while it is valid, otherwise with the CA key."""
        raise self._missing("sign_ocsp_response")

    # --- keys at rest -------------------------------------------------------------------

    def rewrap_keys(self, new_passphrase: str | None = None) -> list[Rewrapped]:
        """Re-encrypt the keys this backend keeps at rest with its strongest protection (and
        under new_passphrase if given); idempotent. A backend whose keys never rest in files
        it encrypts (a token) has nothing to rewrap."""
        return []
