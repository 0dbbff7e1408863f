"""Objects in a token: where a key is (KeyRef, an RFC 7512 URI), finding keys, reading a
public key, and copying a key made in a session onto the token."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11 import exceptions as p11
from pkcs11.util.ec import encode_ec_public_key

from ... import pki
from ..base import CAKeyError
from .session import TokenSession

# A private key made here: only the token uses it, and only to sign.
PRIVATE_TEMPLATE = {
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.PRIVATE: True,
    Attribute.SIGN: True,
    Attribute.DECRYPT: False,
    Attribute.UNWRAP: False,
    Attribute.DERIVE: False,
}
PUBLIC_TEMPLATE = {
    Attribute.VERIFY: True,
    Attribute.ENCRYPT: False,
    Attribute.WRAP: False,
}


@dataclass(frozen=True)
class KeyRef:
    """Where a key is: its token, and its label and/or ID there (RFC 7512's URI)."""

    token: str
    label: str = ""
    key_id: bytes = b""

    def uri(self) -> str:
        parts = [f"token={quote(self.token, safe='')}"]
        if self.label:
            parts.append(f"object={quote(self.label, safe='')}")
        if self.key_id:
            parts.append("id=" + "".join(f"%{b:02x}" for b in self.key_id))
        return "pkcs11:" + ";".join(parts)

    @classmethod
    def parse(cls, uri: str) -> KeyRef:
        if not uri.startswith("pkcs11:"):
            raise CAKeyError(f"{uri!r} is not a PKCS#11 key reference")
        fields = dict(part.partition("=")[::2] for part in uri[7:].split(";") if part)
        return cls(
            token=unquote(fields.get("token", "")),
            label=unquote(fields.get("object", "")),
            key_id=bytes(unquote(fields.get("id", ""), encoding="latin-1"), "latin-1"),
        )

    def describe(self) -> str:
        text = f"token {self.token!r}"
        if self.label:
            text += f", key {self.label!r}"
        if self.key_id:
            text += f" (ID {self.key_id.hex()})"
        return text

    def template(self) -> dict:
        found: dict = {}
        if self.label:
            found[Attribute.LABEL] = self.label
        if self.key_id:
            found[Attribute.ID] = self.key_id
        return found


@dataclass
class Pending:
    """NewKey's secret for this backend: a key in a token session, not yet on the token
    (stored=False), or a key found on it (stored=True)."""

    tokens: TokenSession
    ref: KeyRef
    private: Any
    public: Any
    stored: bool


def public_key_of(public_obj) -> pki.PublicKey:
    """The cryptography public key of a token's public key object."""
    if public_obj.key_type == KeyType.RSA:
        exponent = int.from_bytes(public_obj[Attribute.PUBLIC_EXPONENT], "big")
        modulus = int.from_bytes(public_obj[Attribute.MODULUS], "big")
        return rsa.RSAPublicNumbers(exponent, modulus).public_key()
    if public_obj.key_type == KeyType.EC:
        return serialization.load_der_public_key(encode_ec_public_key(public_obj))
    raise CAKeyError(f"token keys must be RSA or EC, not {public_obj.key_type.name}")


def key_id_of(public_key: pki.PublicKey) -> bytes:
    """The ID a new key gets: its subject key identifier (SHA-1 of the public key), which
    the CA certificate carries too."""
    return x509.SubjectKeyIdentifier.from_public_key(public_key).digest


def private_keys(session, ref: KeyRef) -> list:
    return list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, **ref.template()}))


def one_private_key(session, ref: KeyRef, *, what: str = ""):
    found = private_keys(session, ref)
    if not found:
        raise CAKeyError(
            f"no private key {what + ' ' if what else ''}in the token: {ref.describe()} "
            "was not found (was the token removed or replaced, or the key deleted?)"
        )
    if len(found) > 1:
        raise CAKeyError(f"several private keys match {ref.describe()}; name it by --key-id")
    return found[0]


def public_key_object(session, ref: KeyRef):
    try:
        return next(
            iter(session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY, **ref.template()}))
        )
    except StopIteration:
        return None
    except p11.PKCS11Error:
        return None


def copy_to_token(pending: Pending, ref: KeyRef) -> None:
    """Copy a session key pair onto the token under ref's label and ID; the private key
    stays sensitive and never extractable (the copy keeps those attributes)."""
    stored = {Attribute.TOKEN: True, Attribute.LABEL: ref.label, Attribute.ID: ref.key_id}
    private = pending.private.copy(stored)
    pending.public.copy(stored)
    for obj in (pending.private, pending.public):
        obj.destroy()
    pending.private, pending.stored, pending.ref = private, True, ref
