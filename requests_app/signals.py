"""Signals of the Certificate Manager: the seam between requests_app and delivery.

All are sent inside the transaction of the change they report, so a receiver can write
its own rows atomically with it; receivers defer side effects (mail, HTTP, tasks) with
`transaction.on_commit`, so a rolled-back change notifies nobody.
"""

from django.dispatch import Signal

#: A request entered the agent queue (pending): when submitted, or, for a profile with
#: confirm_email, when its requester confirmed the address. provides args: request, actor
request_submitted = Signal()

#: A request waits for its requester to prove the mailbox: mail them a confirmation code
#: (made with services.issue_email_confirmation_code when the mail is built; only its hash
#: is stored). provides args: request, actor
email_confirmation_requested = Signal()

#: A request whose address was never confirmed expired (canceled by the system); nobody
#: is mailed, as the address was never shown to be the requester's. provides args: request
request_expired = Signal()

#: An agent (or an admin command) approved a request and a certificate was issued.
#: provides args: certificate, request, actor
certificate_issued = Signal()

#: An agent rejected a request. provides args: request, reason, actor
request_rejected = Signal()

#: A request was canceled (by an agent or an admin). provides args: request, actor
request_canceled = Signal()

#: A certificate was revoked, or its hold released (reason "removeFromCRL").
#: provides args: certificate, reason, actor
certificate_revoked = Signal()

#: A CA was created or imported and is now the default. provides args: ca, action, actor
ca_installed = Signal()

#: An agent account was created. provides args: user, actor
agent_created = Signal()

#: A user's second-factor devices changed: "enrolled", "removed", "recovery_codes" (new
#: codes) or "reset" (break-glass, every device removed). provides args: user, event, actor
agent_second_factor_changed = Signal()

#: A key the portal made for a requester was stored ("generated"), handed over as a
#: PKCS#12 ("downloaded") or erased ("erased"). provides args: request, event, actor
server_key_changed = Signal()

#: A delegated OCSP responder certificate was issued for a CA. provides args: ca,
#: certificate, actor
ocsp_responder_created = Signal()

#: A CA signed and stored a new CRL. provides args: crl
crl_published = Signal()

#: A certificate was linked to an agent account, so it logs that agent in ("linked"), or the
#: link was removed ("unlinked"). provides args: link, event, actor
agent_certificate_changed = Signal()

#: The CA and OCSP keys at rest were re-encrypted (rewrap_keys). provides args: rewrapped
#: (how many key files changed), actor
keys_rewrapped = Signal()

#: Users gained (granted=True) or lost the agents' approval access: the agents group, a group
#: with the approval permission, the permission itself, superuser status. provides args:
#: users, granted, via (how, in words), actor
agent_access_changed = Signal()
