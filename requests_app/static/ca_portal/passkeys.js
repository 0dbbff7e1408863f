// The security page: after django-otp-webauthn registered a passkey, show the new list.
document.addEventListener("otp_webauthn.register_complete", function () {
  window.location.reload();
});
