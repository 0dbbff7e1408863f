"""The engine's refusals: one family, each message meant for a person."""


class PKIError(ValueError):
    """Base of the engine's refusals; the message is meant for a person."""


class CSRError(PKIError):
    """A CSR was refused; the message says what the requester should do."""


class CAError(PKIError):
    """A CA certificate or key was refused, or the key could not be opened."""


class InvalidName(PKIError):
    """A DN string or a hostname was refused."""


class WrongPassphrase(PKIError):
    """The passphrase does not open the sealed key."""


class OCSPRequestError(ValueError):
    """The OCSP request cannot be read: the answer is the malformedRequest status."""
