"""The JSON shapes of the Dogtag REST resources as JSON Schema, for the OpenAPI description
(requests_app/rest/openapi.py): what Dogtag 11 serves and dogtag-pki 11.2.1 reads and sends.
Unknown keys are allowed everywhere, as the client echoes back whatever it was given."""

from __future__ import annotations


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _string(description: str, **extra) -> dict:
    return {"type": "string", "description": description, **extra}


def _nullable(kind: str, description: str = "") -> dict:
    schema: dict = {"type": [kind, "null"]}
    if description:
        schema["description"] = description
    return schema


# Errors: Dogtag's PKIException JSON, which dogtag-pki turns into its typed exceptions by
# ClassName (pki.EXCEPTION_MAPPINGS); all four keys are mandatory for the client.
PKI_EXCEPTION = {
    "type": "object",
    "description": (
        "Dogtag's error (PKIExceptionSerializer). dogtag-pki raises the exception named by "
        "ClassName: BadRequestException (400), ForbiddenException (403), "
        "ResourceNotFoundException and its RequestNotFound/CertNotFound/ProfileNotFound "
        "subclasses (404), ConflictingOperationException (409)."
    ),
    "required": ["Attributes", "ClassName", "Code", "Message"],
    "properties": {
        "Attributes": {
            "type": "object",
            "required": ["Attribute"],
            "properties": {
                "Attribute": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "value"],
                        "properties": {"name": {"type": "string"}, "value": {"type": "string"}},
                    },
                }
            },
        },
        "ClassName": _string("Java class name, e.g. com.netscape.certsrv.base.BadRequestException"),
        "Code": {"type": "integer", "description": "the HTTP status"},
        "Message": {"type": "string"},
    },
}

DESCRIPTOR = {
    "type": ["object", "null"],
    "properties": {
        "Syntax": _nullable("string"),
        "Description": _nullable("string"),
        "Constraint": _nullable("string"),
        "DefaultValue": _nullable("string"),
    },
}

PROFILE_ATTRIBUTE = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string"},
        "Value": {"description": "the value the caller fills in (any JSON, usually a string)"},
        "Descriptor": ref("Descriptor"),
    },
}

PROFILE_INPUT = {
    "type": "object",
    "required": ["Attribute", "ConfigAttribute"],
    "properties": {
        "id": {"type": "string"},
        "ClassID": {"type": "string"},
        "Name": {"type": "string"},
        "Text": _nullable("string"),
        "Attribute": {"type": "array", "items": ref("ProfileAttribute")},
        "ConfigAttribute": {"type": "array", "items": ref("ProfileAttribute")},
    },
}

ATTRIBUTES = {
    "type": "object",
    "properties": {
        "Attribute": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "value": {}},
            },
        }
    },
}

ENROLLMENT_PROPERTIES = {
    "ProfileID": {"type": "string", "description": "caServerCert, caUserCert, ... (see below)"},
    "Renewal": {"type": ["boolean", "null"]},
    "SerialNumber": _nullable("string"),
    "RemoteHost": _nullable("string"),
    "RemoteAddress": _nullable("string"),
    "Input": {"type": "array", "items": ref("ProfileInput")},
    "Output": {"type": "array", "items": {"type": "object"}},
    "Attributes": ref("Attributes"),
}

ENROLLMENT_TEMPLATE = {
    "type": "object",
    "description": (
        "An enrollment template (CertEnrollmentRequest); the submit body is this template "
        "with the Value of each input attribute filled in: cert_request_type (pkcs10), "
        "cert_request (the PKCS#10 CSR, PEM or bare base64), requestor_name, "
        "requestor_email, requestor_phone."
    ),
    "required": ["ProfileID", "Input", "Output"],
    "properties": ENROLLMENT_PROPERTIES,
}

ENROLLMENT_REQUEST = {
    "type": "object",
    "required": ["ProfileID"],
    "properties": ENROLLMENT_PROPERTIES,
}

CERT_REQUEST_INFO = {
    "type": "object",
    "required": ["requestURL", "requestStatus"],
    "properties": {
        "requestID": _string("Dogtag's request ID in hexadecimal, 0x..."),
        "requestType": {
            "type": "string",
            "enum": ["enrollment", "renewal", "revocation", "unrevocation"],
        },
        "requestStatus": {
            "type": "string",
            "enum": [
                "begin",
                "pending",
                "approved",
                "svc_pending",
                "canceled",
                "rejected",
                "complete",
            ],
        },
        "requestURL": _string(
            "the request's URL; its last segment is the request ID the client uses", format="uri"
        ),
        "certId": _string("the certificate's serial number, 0x + lowercase hexadecimal"),
        "certURL": _string("the certificate's URL", format="uri"),
        "certRequestType": {"type": "string"},
        "operationResult": {"type": "string", "enum": ["success", "error"]},
        "errorMessage": {"type": "string"},
    },
}

POLICY = {
    "type": "object",
    "required": ["id"],
    "properties": {
        "id": {"type": "string"},
        "def": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "text": {"type": "string"},
                "attributes": {"type": "array", "items": ref("ProfileAttribute")},
                "params": {"type": "array", "items": {"type": "object"}},
            },
        },
        "constraint": {"type": "object"},
    },
}

CERT_REVIEW = {
    "type": "object",
    "description": (
        "The review of a request (CertReviewResponse): the enrollment shape plus the "
        "request's state and a nonce. The action POSTs take this document back, with the "
        "same nonce: a nonce is single use, bound to the agent and the request."
    ),
    "required": ["ProfilePolicySet", "nonce", "requestId"],
    "properties": {
        **ENROLLMENT_PROPERTIES,
        "nonce": _string("single use; echo it in the action body"),
        "requestId": _string("Dogtag's request ID in hexadecimal, 0x..."),
        "requestType": {"type": "string"},
        "requestStatus": {"type": "string"},
        "requestOwner": {"type": "string"},
        "requestCreationTime": {"type": "string"},
        "requestModificationTime": {"type": "string"},
        "requestNotes": _nullable("string"),
        "profileApprovedBy": _nullable("string"),
        "profileSetId": _nullable("string"),
        "profileIsVisible": _nullable("string"),
        "profileName": _nullable("string"),
        "profileDescription": _nullable("string"),
        "profileRemoteHost": _nullable("string"),
        "profileRemoteAddr": _nullable("string"),
        "ProfilePolicySet": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["policies"],
                "properties": {"policies": {"type": "array", "items": ref("ProfilePolicy")}},
            },
        },
    },
}

REVIEW_ECHO = {
    "type": "object",
    "description": "The review document as GET returned it, with its nonce.",
    "properties": {"nonce": _nullable("string"), "requestId": _nullable("string")},
}

CERT_STATUS = {
    "type": "string",
    "enum": ["VALID", "INVALID", "REVOKED", "EXPIRED", "REVOKED_EXPIRED"],
}

CERT_DATA = {
    "type": "object",
    "required": ["id"],
    "properties": {
        "id": _string("serial number, 0x + lowercase hexadecimal"),
        "IssuerDN": {"type": "string"},
        "SubjectDN": {"type": "string"},
        "PrettyPrint": {"type": "string"},
        "Encoded": _string("the certificate in PEM"),
        "PKCS7CertChain": _string(
            "base64 of a certs-only PKCS#7: the certificate, then its CA chain"
        ),
        "NotBefore": _string("Java Date.toString(): EEE MMM dd HH:mm:ss zzz yyyy"),
        "NotAfter": _string("Java Date.toString(): EEE MMM dd HH:mm:ss zzz yyyy"),
        "Status": CERT_STATUS,
        "RevokedOn": {"type": ["string", "integer"]},
        "RevokedBy": {"type": "string"},
        "RevocationReason": {"type": "integer"},
        "Nonce": {"type": "integer", "description": "review_cert only: echo it in the revoke body"},
    },
}

CERT_DATA_INFO = {
    "type": "object",
    "required": ["id"],
    "properties": {
        "id": _string("serial number, 0x + lowercase hexadecimal"),
        "SubjectDN": {"type": "string"},
        "IssuerDN": {"type": "string"},
        "Status": CERT_STATUS,
        "Type": {"type": "string"},
        "Version": {"type": "integer"},
        "KeyAlgorithmOID": {"type": "string"},
        "KeyLength": {"type": "integer"},
        "NotValidBefore": {"type": "integer", "description": "epoch milliseconds"},
        "NotValidAfter": {"type": "integer", "description": "epoch milliseconds"},
        "IssuedOn": {"type": "integer", "description": "epoch milliseconds"},
        "IssuedBy": {"type": "string"},
        "RevokedOn": {"type": "integer", "description": "epoch milliseconds"},
        "RevokedBy": {"type": "string"},
    },
}


def _collection(item: str) -> dict:
    return {
        "type": "object",
        "required": ["entries"],
        "properties": {
            "total": {"type": "integer", "description": "entries so far (no table is counted)"},
            "entries": {"type": "array", "items": ref(item)},
            "Link": {
                "type": "array",
                "description": "rel next: the next page, when more follow",
                "items": {
                    "type": "object",
                    "properties": {"rel": {"type": "string"}, "href": {"type": "string"}},
                },
            },
        },
    }


_flag = {"type": ["boolean", "null"]}
_text = {"type": ["string", "null"]}
CERT_SEARCH = {
    "type": "object",
    "description": (
        "CertSearchRequest as dogtag-pki's list_certs sends it: each group of criteria is "
        "switched on by its ...InUse flag; {} or {serialNumberRangeInUse: true} alone means "
        "every certificate."
    ),
    "properties": {
        "status": {"type": ["string", "null"]},
        "serialNumberRangeInUse": _flag,
        "serialFrom": _text,
        "serialTo": _text,
        "subjectInUse": _flag,
        "eMail": _text,
        "commonName": _text,
        "userID": _text,
        "orgUnit": _text,
        "org": _text,
        "locality": _text,
        "state": _text,
        "country": _text,
        "matchExactly": _flag,
        "revokedByInUse": _flag,
        "revokedBy": _text,
        "revokedOnInUse": _flag,
        "revokedOnFrom": _text,
        "revokedOnTo": _text,
        "revocationReasonInUse": _flag,
        "revocationReason": _text,
        "issuedByInUse": _flag,
        "issuedBy": _text,
        "issuedOnInUse": _flag,
        "issuedOnFrom": _text,
        "issuedOnTo": _text,
        "validNotBeforeInUse": _flag,
        "validNotBeforeFrom": _text,
        "validNotBeforeTo": _text,
        "validNotAfterInUse": _flag,
        "validNotAfterFrom": _text,
        "validNotAfterTo": _text,
    },
}

REVOCATION_REASONS = [
    "Unspecified",
    "Key_Compromise",
    "CA_Compromise",
    "Affiliation_Changed",
    "Superseded",
    "Cessation_of_Operation",
    "Certificate_Hold",
    "Remove_from_CRL",
    "Privilege_Withdrawn",
    "AA_Compromise",
]

CERT_REVOKE = {
    "type": "object",
    "description": "CertRevokeRequest (Dogtag 11.4+ capitalised keys, as dogtag-pki sends them).",
    "properties": {
        "Reason": {"type": "string", "enum": REVOCATION_REASONS},
        "Nonce": {"type": ["integer", "string", "null"]},
        "InvalidityDate": {
            "type": ["string", "integer", "null"],
            "description": "when the key was compromised: epoch milliseconds or ISO 8601",
        },
        "Comments": _text,
    },
}

INFO = {
    "type": "object",
    "required": ["Name", "Version"],
    "properties": {
        "Attributes": ref("Attributes"),
        "Name": {"type": "string"},
        "Version": _string("the Dogtag REST API version spoken, x.y.z"),
        "ArchivalMechanism": _string("key archival: none (ca-portal has no KRA)"),
    },
}


SCHEMAS = {
    "PKIException": PKI_EXCEPTION,
    "Descriptor": DESCRIPTOR,
    "ProfileAttribute": PROFILE_ATTRIBUTE,
    "ProfileInput": PROFILE_INPUT,
    "Attributes": ATTRIBUTES,
    "ProfileDataInfo": {
        "type": "object",
        "properties": {
            "profileId": {"type": "string"},
            "profileName": {"type": "string"},
            "profileDescription": {"type": "string"},
            "profileURL": {"type": "string", "format": "uri"},
        },
    },
    "ProfileDataInfos": _collection("ProfileDataInfo"),
    "EnrollmentTemplate": ENROLLMENT_TEMPLATE,
    "EnrollmentRequest": ENROLLMENT_REQUEST,
    "CertRequestInfo": CERT_REQUEST_INFO,
    "CertRequestInfos": _collection("CertRequestInfo"),
    "ProfilePolicy": POLICY,
    "CertReviewResponse": CERT_REVIEW,
    "ReviewEcho": REVIEW_ECHO,
    "CertData": CERT_DATA,
    "CertDataInfo": CERT_DATA_INFO,
    "CertDataInfos": _collection("CertDataInfo"),
    "CertSearchRequest": CERT_SEARCH,
    "CertRevokeRequest": CERT_REVOKE,
    "Info": INFO,
}
