"""The PKCS#11 key backend: CA keys made in (or found in) a hardware token, which signs
certificates, CRLs and OCSP answers; the private key never leaves it.

    CA_KEY_BACKENDS["pkcs11"] = {
        "BACKEND": "requests_app.keys.pkcs11.PKCS11Backend",
        "OPTIONS": {},  # module, token_label, pin, pin_file: default PKCS11_* settings
    }

A CA row keeps only the key's reference, an RFC 7512 URI without secrets
(`pkcs11:token=Portal;object=ca-1f2e...;id=%1f%2e...`); the module comes from the backend's
options and the PIN from PKCS11_PIN or PKCS11_PIN_FILE. A new key is made as a session
object (sensitive, never extractable) and copied onto the token when the CA's row is saved,
so a CA that fails to be created leaves no key behind. A delegated OCSP responder lives in
the CA's token too: its key, and its certificate as a certificate object labelled
`ocsp-<CA key ID>`.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from cryptography import x509
from django.conf import settings
from pkcs11 import Attribute, CertificateType, KeyType, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters

from ... import pki
from ..base import CAKeyError, KeyBackend, NewKey
from .objects import (
    PRIVATE_TEMPLATE,
    PUBLIC_TEMPLATE,
    KeyRef,
    Pending,
    copy_to_token,
    key_id_of,
    one_private_key,
    private_keys,
    public_key_object,
    public_key_of,
)
from .session import TokenSession, read_pin
from .wrappers import token_key

if TYPE_CHECKING:
    from ...models import CertificateAuthority

logger = logging.getLogger(__name__)

_CURVES = {"p256": "secp256r1", "p384": "secp384r1"}
#: How long a process trusts what it read of a CA's OCSP responder before it looks again.
RESPONDER_TTL = 5.0


class PKCS11Backend(KeyBackend):
    """Keys in a PKCS#11 token. OPTIONS `module`, `token_label`, `pin`, `pin_file` default
    to the PKCS11_MODULE, PKCS11_TOKEN_LABEL, PKCS11_PIN and PKCS11_PIN_FILE settings."""

    options = ("module", "token_label", "pin", "pin_file")

    def __init__(self, alias, *, module=None, token_label=None, pin=None, pin_file=None):
        super().__init__(alias)
        self._module, self._token_label = module, token_label
        self._pin_value, self._pin_file = pin, pin_file
        self._sessions: dict[tuple[str, str], TokenSession] = {}
        self._responders: dict[int, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    # --- configuration ---------------------------------------------------------------

    @property
    def module(self) -> str:
        """The PKCS#11 module (a shared library) this backend signs with."""
        return self._module or getattr(settings, "PKCS11_MODULE", "")

    @property
    def token_label(self) -> str:
        """The token new keys go to unless another is named."""
        return self._token_label or getattr(settings, "PKCS11_TOKEN_LABEL", "")

    def _pin(self) -> str:
        return read_pin(
            self._pin_value or getattr(settings, "PKCS11_PIN", ""),
            self._pin_file or getattr(settings, "PKCS11_PIN_FILE", ""),
        )

    def _tokens(self, token_label: str = "", module: str = "") -> TokenSession:
        """The pooled session of a token (the configured one unless named)."""
        if module and self.module and module != self.module:
            raise CAKeyError(
                f"the portal signs with the PKCS#11 module {self.module} (PKCS11_MODULE); "
                f"a key made through {module} would not be usable by it"
            )
        module = module or self.module
        token_label = token_label or self.token_label
        if not module:
            raise CAKeyError("no PKCS#11 module: set PKCS11_MODULE or give --pkcs11-module")
        if not token_label:
            raise CAKeyError("no token: set PKCS11_TOKEN_LABEL or give --token-label")
        with self._lock:
            tokens = self._sessions.get((module, token_label))
            if tokens is None:
                tokens = TokenSession(module, token_label, self._pin)
                self._sessions[(module, token_label)] = tokens
            return tokens

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
            self._responders = {}
        for tokens in sessions:
            tokens.close()

    # --- command-line options (init_ca, import_ca) -------------------------------------

    @classmethod
    def add_arguments(cls, group) -> None:
        group.add_argument(
            "--pkcs11-module",
            metavar="PATH",
            help="the PKCS#11 module (default PKCS11_MODULE); the PIN comes from PKCS11_PIN "
            "or PKCS11_PIN_FILE, never the command line",
        )
        group.add_argument(
            "--token-label", metavar="L", help="the token (default PKCS11_TOKEN_LABEL)"
        )
        group.add_argument(
            "--key-label",
            metavar="K",
            help="the key's label in the token (init_ca: the new key's, default ca-<ID>; "
            "import_ca: the existing key's)",
        )
        group.add_argument(
            "--key-id", metavar="HEX", help="the key's ID in the token (default: its SKI)"
        )

    @classmethod
    def key_options(cls, options: dict) -> dict:
        key_id = options.get("key_id") or ""
        try:
            key_id_bytes = bytes.fromhex(key_id.replace(":", ""))
        except ValueError:
            raise CAKeyError(f"--key-id {key_id!r} is not hexadecimal") from None
        return {
            "module": options.get("pkcs11_module") or "",
            "token_label": options.get("token_label") or "",
            "key_label": options.get("key_label") or "",
            "key_id": key_id_bytes,
        }

    @classmethod
    def names_key(cls, key_options: dict) -> bool:
        return bool(key_options.get("key_label") or key_options.get("key_id"))

    def check_key_options(
        self,
        ca: CertificateAuthority,
        *,
        module: str = "",
        token_label: str = "",
        key_label: str = "",
        key_id: bytes = b"",
    ) -> None:
        ref = KeyRef.parse(ca.key_filename)
        given = (
            ("--pkcs11-module", module, self.module),
            ("--token-label", token_label, ref.token),
            ("--key-label", key_label, ref.label),
            ("--key-id", key_id.hex(), ref.key_id.hex()),
        )
        for option, value, actual in given:
            if value and value != actual:
                raise CAKeyError(
                    f"the key of CA {ca.pk} ({ca.name}) is {ref.describe()} in the module "
                    f"{self.module}, which {option} does not name"
                )

    # --- custody of a new CA's key ---------------------------------------------------

    def generate_key(
        self,
        key_type: str,
        *,
        module: str = "",
        token_label: str = "",
        key_label: str = "",
        key_id: bytes = b"",
    ) -> NewKey:
        if key_type not in pki.CA_KEY_TYPES:
            raise CAKeyError(
                f"a token key is one of {', '.join(pki.CA_KEY_TYPES)}, not {key_type!r}"
            )
        tokens = self._tokens(token_label, module)

        def generate(session):
            if key_label and private_keys(session, KeyRef(tokens.token_label, key_label)):
                raise CAKeyError(
                    f"the token {tokens.token_label!r} already holds a key labelled "
                    f"{key_label!r}: use import_ca for a CA of that key, or another label"
                )
            if key_type in _CURVES:
                params = session.create_domain_parameters(
                    KeyType.EC,
                    {Attribute.EC_PARAMS: encode_named_curve_parameters(_CURVES[key_type])},
                    local=True,
                )
                return params.generate_keypair(
                    store=False,
                    public_template=PUBLIC_TEMPLATE,
                    private_template=PRIVATE_TEMPLATE,
                )
            return session.generate_keypair(
                KeyType.RSA,
                int(key_type[3:]),
                store=False,
                public_template=PUBLIC_TEMPLATE,
                private_template=PRIVATE_TEMPLATE,
            )

        public, private = tokens.run(generate, what="making a key")
        public_key = public_key_of(public)
        new_id = key_id or key_id_of(public_key)
        ref = KeyRef(tokens.token_label, key_label or f"ca-{new_id.hex()[:16]}", new_id)
        return NewKey(public_key, Pending(tokens, ref, private, public, stored=False))

    def import_key(
        self,
        data: bytes | None,
        passphrase: str | None,
        *,
        module: str = "",
        token_label: str = "",
        key_label: str = "",
        key_id: bytes = b"",
    ) -> NewKey:
        """A key already in the token, named by label and/or ID (a key file is refused:
        keys are made in the token, or brought there with the token's own tools)."""
        if data:
            raise CAKeyError(
                "the pkcs11 backend does not take a key file: the key must already be in "
                "the token (give --key-label or --key-id instead of --key)"
            )
        if not (key_label or key_id):
            raise CAKeyError("name the key in the token with --key-label or --key-id")
        tokens = self._tokens(token_label, module)
        wanted = KeyRef(tokens.token_label, key_label, key_id)

        def find(session):
            private = one_private_key(session, wanted)
            ref = KeyRef(tokens.token_label, private.label or "", private.id or b"")
            public = public_key_object(session, ref)
            if public is None:
                raise CAKeyError(
                    f"the token holds no public key beside {ref.describe()}; store it there "
                    "(same ID) so that the key can be matched with its certificate"
                )
            return ref, private, public

        ref, private, public = tokens.run(find, what="finding the key")
        return NewKey(public_key_of(public), Pending(tokens, ref, private, public, stored=True))

    def sign_with_new_key(
        self, key: NewKey, builder: x509.CertificateBuilder | x509.CertificateSigningRequestBuilder
    ) -> x509.Certificate | x509.CertificateSigningRequest:
        """A new root's certificate, or a subordinate's CSR (init_ca --csr-only), signed in
        the token by the key not stored yet."""
        pending: Pending = key._secret

        def signer(data, mechanism):
            return pending.tokens.run(
                lambda session: pending.private.sign(data, mechanism=mechanism), what="signing"
            )

        return pki.sign(builder, token_key(signer, key.public_key))

    def key_reference(self, cert: x509.Certificate, key: NewKey | None = None) -> str:
        """The key's URI: from the key made or found (key), or else the key the configured
        token holds for the certificate's public key (a CA completed from a pending one
        keeps the reference its key was stored under: the same URI)."""
        if key is not None:
            return key._secret.ref.uri()
        tokens = self._tokens()
        wanted = cert.public_key()

        def find(session):
            by_id = private_keys(session, KeyRef(tokens.token_label, "", key_id_of(wanted)))
            candidates = by_id or private_keys(session, KeyRef(tokens.token_label))
            for private in candidates:
                ref = KeyRef(tokens.token_label, private.label or "", private.id or b"")
                public = public_key_object(session, ref) if ref.label or ref.key_id else None
                if public is not None and pki.same_public_key(public_key_of(public), wanted):
                    return ref
            raise CAKeyError(
                f"the token {tokens.token_label!r} holds no private key for the certificate "
                f"of {cert.subject.rfc4514_string()}"
            )

        return tokens.run(find, what="finding the key").uri()

    def pending_key_reference(self, public_key: pki.PublicKey, key: NewKey | None = None) -> str:
        """A pending CA's key is named as a completed CA's (its URI), so the reference
        stays the same when the certificate arrives."""
        if key is not None:
            return key._secret.ref.uri()
        key_id = key_id_of(public_key)
        return KeyRef(self._tokens().token_label, f"ca-{key_id.hex()[:16]}", key_id).uri()

    def store_key(self, ca: CertificateAuthority, key: NewKey) -> None:
        """Copy the session key onto the token under the row's reference (ca.key_filename);
        a pending CA's key (init_ca --csr-only) is then there for import_ca --certificate
        to complete in another process. A key found on the token stays as it is."""
        pending: Pending = key._secret
        ref = KeyRef.parse(ca.key_filename)
        if ref.token != pending.tokens.token_label:
            raise CAKeyError(
                f"the key of CA '{ca.name}' was made in the token "
                f"{pending.tokens.token_label!r}, but its row names {ref.token!r}"
            )
        if pending.stored:
            return
        pending.tokens.run(lambda session: copy_to_token(pending, ref), what="storing the key")

    def key_location(self, ca: CertificateAuthority) -> str:
        return f"PKCS#11 {KeyRef.parse(ca.key_filename).describe()}, module {self.module}"

    # --- signing with a CA's key -------------------------------------------------------

    def check_usable(self, ca: CertificateAuthority) -> None:
        ref = KeyRef.parse(ca.key_filename)
        tokens = self._tokens(ref.token)
        # Looked for every time (cheap): a token pulled out is noticed before signing.
        tokens.run(lambda session: self._private(session, tokens, ca, fresh=True), what="checking")

    def sign_certificate(self, ca, builder):
        return pki.sign(builder, self._ca_key(ca))

    def sign_crl(self, ca, builder):
        return pki.sign(builder, self._ca_key(ca))

    def _ca_key(self, ca: CertificateAuthority):
        ref = KeyRef.parse(ca.key_filename)
        tokens = self._tokens(ref.token)

        def signer(data, mechanism):
            return tokens.run(
                lambda session: self._private(session, tokens, ca).sign(data, mechanism=mechanism),
                what=f"signing for CA '{ca.name}'",
            )

        return token_key(signer, ca.certificate.public_key())

    def _private(self, session, tokens: TokenSession, ca: CertificateAuthority, *, fresh=False):
        """The CA's private key object, found once per session (or again when fresh) and
        checked against the CA certificate when first found."""
        # Keyed by the certificate too: a row pointed at another CA's key is checked anew.
        cache_key = (ca.key_filename, ca.certificate_pem)
        cached = tokens.cache.get(cache_key)
        if cached is not None and not fresh:
            return cached
        ref = KeyRef.parse(ca.key_filename)
        private = one_private_key(session, ref, what=f"of CA '{ca.name}'")
        if cached is None:
            public = public_key_object(session, ref)
            if public is not None and not pki.same_public_key(
                public_key_of(public), ca.certificate.public_key()
            ):
                raise CAKeyError(
                    f"the key {ref.describe()} does not match the certificate of CA '{ca.name}'"
                )
        tokens.cache[cache_key] = private
        return private

    # --- OCSP: the delegated responder, or the CA itself -----------------------------

    def _responder_label(self, ca: CertificateAuthority) -> str:
        return f"ocsp-{key_id_of(ca.certificate.public_key()).hex()[:16]}"

    def store_ocsp_responder(self, ca, key: NewKey, cert: x509.Certificate) -> None:
        """The responder's key goes onto the CA's token, then its certificate object
        replaces the previous one, whose key is destroyed."""
        pending: Pending = key._secret
        ca_ref = KeyRef.parse(ca.key_filename)
        if pending.tokens is not self._tokens(ca_ref.token):
            raise CAKeyError(
                f"the OCSP responder key was made in the token {pending.tokens.token_label!r}, "
                f"but CA '{ca.name}' is in {ca_ref.token!r}: set PKCS11_TOKEN_LABEL to it"
            )
        label = self._responder_label(ca)
        serial = pki.serial_hex(cert.serial_number)[:16]
        ref = KeyRef(ca_ref.token, f"{label}-{serial}", key_id_of(key.public_key))

        def store(session):
            previous = list(
                session.get_objects(
                    {Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.LABEL: label}
                )
            )
            copy_to_token(pending, ref)
            session.create_object(
                {
                    Attribute.CLASS: ObjectClass.CERTIFICATE,
                    Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
                    Attribute.TOKEN: True,
                    Attribute.PRIVATE: False,
                    Attribute.LABEL: label,
                    Attribute.ID: ref.key_id,
                    Attribute.SUBJECT: cert.subject.public_bytes(),
                    Attribute.VALUE: pki.to_der(cert),
                }
            )
            for old in previous:
                old_id = old[Attribute.ID]
                old.destroy()
                if old_id and old_id != ref.key_id:
                    for obj in session.get_objects({Attribute.ID: old_id}):
                        obj.destroy()

        pending.tokens.run(store, what="storing the OCSP responder")
        with self._lock:
            self._responders.pop(ca.pk, None)

    def sign_ocsp_response(self, ca, builder) -> bytes:
        delegated = self._delegated_responder(ca)
        if delegated is not None:
            responder_cert, responder_key = delegated
        else:
            responder_cert, responder_key = ca.certificate, self._ca_key(ca)
        builder = pki.with_responder(builder, responder_cert, delegated=delegated is not None)
        return pki.response_der(pki.sign(builder, responder_key))

    def _delegated_responder(self, ca: CertificateAuthority):
        cached = self._responders.get(ca.pk)
        if cached is None or time.monotonic() - cached[0] > RESPONDER_TTL:
            try:
                loaded = self._load_responder(ca)
            except CAKeyError as exc:
                logger.error("cannot read the OCSP responder of CA %s: %s", ca, exc)
                loaded = None
            cached = (time.monotonic(), loaded)
            with self._lock:
                self._responders[ca.pk] = cached
        loaded = cached[1]
        if loaded is None:
            return None
        cert, responder_key = loaded
        now = pki.utcnow()
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            logger.warning("the OCSP responder of CA %s has expired; signing with the CA key", ca)
            return None
        return cert, responder_key

    def _load_responder(self, ca: CertificateAuthority):
        ref = KeyRef.parse(ca.key_filename)
        tokens = self._tokens(ref.token)
        label = self._responder_label(ca)

        def find(session):
            objects = list(
                session.get_objects(
                    {Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.LABEL: label}
                )
            )
            if not objects:
                return None
            cert = x509.load_der_x509_certificate(bytes(objects[-1][Attribute.VALUE]))
            key_ref = KeyRef(ref.token, "", key_id_of(cert.public_key()))
            one_private_key(session, key_ref, what="of the OCSP responder")
            return cert, key_ref

        found = tokens.run(find, what="reading the OCSP responder")
        if found is None:
            return None
        cert, key_ref = found
        if not pki.verify_signed_by(cert, ca.certificate):
            logger.error("the OCSP responder in the token of CA %s is not the CA's", ca)
            return None

        def signer(data, mechanism):
            def sign(session):
                private = tokens.cache.get(key_ref)
                if private is None:
                    private = tokens.cache[key_ref] = one_private_key(session, key_ref)
                return private.sign(data, mechanism=mechanism)

            return tokens.run(sign, what="signing an OCSP answer")

        return cert, token_key(signer, cert.public_key())
