"""The revocation form, shared by the agent's certificate page and the admin action."""

from __future__ import annotations

from django import forms

from ..pki import REASON_LABELS, REASONS


class RevokeForm(forms.Form):
    reason = forms.ChoiceField(
        choices=[("", "Choose a reason…"), *((name, REASON_LABELS[name]) for name in REASONS)],
        help_text="Every reason is final except Certificate hold, which can be released.",
    )
    invalidity_date = forms.DateTimeField(
        label="Invalidity date (UTC)",
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Optional: when the key was, or may have been, compromised.",
    )

    def __init__(self, *args, on_hold: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if on_hold:  # a hold can only become a final revocation
            field = self.fields["reason"]
            field.choices = [c for c in field.choices if c[0] != "certificateHold"]

    def apply_error(self, exc) -> None:
        """Show a service's refusal on its field, or above the form."""
        self.add_error(exc.field if exc.field in self.fields else None, exc.message)
