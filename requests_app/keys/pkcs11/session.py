"""PKCS#11 sessions, pooled per process: one logged-in session per token, used by one
thread at a time.

A PKCS#11 module is initialised once per process (`pkcs11.lib` is a singleton per path);
every session of the process shares its login, and a session runs one operation at a time.
So each (module, token) gets one session, opened and logged in on first use and guarded by
the module's lock. When the token fails (removed, closed, reset) the session is dropped and
the next use opens a new one; when a token is not found, the module is initialised again
once (a token inserted or re-created after start-up is only seen then). Every failure is a
CAKeyError naming the token and the problem, never the PIN.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pkcs11
from pkcs11 import exceptions as p11

from ..base import CAKeyError

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Failures after which the session cannot be trusted: open a new one next time.
_SESSION_LOST = (
    p11.DeviceRemoved,
    p11.DeviceError,
    p11.SessionClosed,
    p11.SessionHandleInvalid,
    p11.TokenNotPresent,
    p11.TokenNotRecognised,
    p11.UserNotLoggedIn,
    p11.ObjectHandleInvalid,
    p11.GeneralError,
    p11.FunctionFailed,
)


class Library:
    """A PKCS#11 module loaded in this process, its lock, and its tokens' sessions."""

    def __init__(self, path: str):
        self.path = path
        self.lock = threading.RLock()
        self.generation = 0  # bumped when the module is initialised again
        self._lib: Any = None
        self._pid = 0

    def load(self):
        """The initialised module (loaded on first use; again in a forked child)."""
        if self._lib is not None and self._pid == os.getpid():
            return self._lib
        if not Path(self.path).is_file():
            raise CAKeyError(f"the PKCS#11 module {self.path} does not exist")
        try:
            lib = pkcs11.lib(self.path)
            if self._lib is not None:  # a forked child: the parent's state is not ours
                lib.reinitialize()
                self.generation += 1
        except p11.PKCS11Error as exc:
            raise CAKeyError(f"cannot load the PKCS#11 module {self.path}: {exc}") from None
        self._lib, self._pid = lib, os.getpid()
        return lib

    def reinitialize(self) -> None:
        """Finalize and initialise the module again: it then sees tokens as they are now.
        Every session of the module in this process ends."""
        lib = self.load()
        try:
            lib.reinitialize()
        except p11.PKCS11Error as exc:
            raise CAKeyError(f"cannot initialise the PKCS#11 module {self.path}: {exc}") from None
        self.generation += 1
        logger.warning("initialised the PKCS#11 module %s again", self.path)


_libraries: dict[str, Library] = {}
_libraries_lock = threading.Lock()


def library(path: str) -> Library:
    """The process's one Library for a module path."""
    with _libraries_lock:
        found = _libraries.get(path)
        if found is None:
            found = _libraries[path] = Library(path)
        return found


class TokenSession:
    """The pooled session of one token of one module, logged in with a PIN from pin()."""

    def __init__(self, module: str, token_label: str, pin: Callable[[], str]):
        self.library = library(module)
        self.token_label = token_label
        self._pin = pin
        self._session: Any = None
        self._generation = -1
        #: Objects found in the current session (handles die with it), by the caller's key.
        self.cache: dict = {}

    def __repr__(self) -> str:
        return f"<TokenSession {self.token_label!r} in {self.library.path}>"

    def run(self, operation: Callable[[Any], T], *, what: str) -> T:
        """operation(session) under the module's lock, with a live logged-in session; a
        failure of the token is a CAKeyError saying what was being done."""
        with self.library.lock:
            session = self._open()
            try:
                return operation(session)
            except CAKeyError:
                raise
            except _SESSION_LOST as exc:
                self._drop()
                raise CAKeyError(
                    f"the token {self.token_label!r} failed while {what} "
                    f"({type(exc).__name__}); was it removed?"
                ) from None
            except p11.PKCS11Error as exc:
                raise CAKeyError(
                    f"the token {self.token_label!r} refused {what} ({type(exc).__name__})"
                ) from None

    def close(self) -> None:
        """End the session (its login ends with the module's last session)."""
        with self.library.lock:
            self._drop()

    def _drop(self) -> None:
        session, self._session = self._session, None
        self.cache = {}
        if session is not None and self._generation == self.library.generation:
            with contextlib.suppress(p11.PKCS11Error):  # already gone with its token
                session.close()

    def _open(self):
        if self._session is not None and self._generation == self.library.generation:
            return self._session
        self._session, self.cache = None, {}
        lib = self.library.load()
        try:
            token = lib.get_token(token_label=self.token_label)
        except p11.NoSuchToken:
            # Maybe inserted (or re-created) since the module was initialised: look again.
            self.library.reinitialize()
            try:
                token = self.library.load().get_token(token_label=self.token_label)
            except p11.NoSuchToken:
                raise CAKeyError(
                    f"no token labelled {self.token_label!r} in the PKCS#11 module "
                    f"{self.library.path}: was it removed, or is PKCS11_TOKEN_LABEL wrong?"
                ) from None
        except p11.MultipleTokensReturned:
            raise CAKeyError(
                f"several tokens are labelled {self.token_label!r}; give each a unique label"
            ) from None
        except p11.PKCS11Error as exc:
            raise CAKeyError(
                f"cannot reach the token {self.token_label!r} ({type(exc).__name__})"
            ) from None
        pin = self._pin()
        try:
            session = token.open(user_pin=pin, rw=True)
        except p11.UserAlreadyLoggedIn:
            # Another session of this process logged the token in: it is shared.
            session = self._open_without_login(token)
        except (p11.PinIncorrect, p11.PinInvalid, p11.PinLenRange):
            raise CAKeyError(
                f"the PIN of the token {self.token_label!r} is wrong "
                "(check PKCS11_PIN or PKCS11_PIN_FILE)"
            ) from None
        except p11.PinLocked:
            raise CAKeyError(
                f"the PIN of the token {self.token_label!r} is locked; its security officer "
                "must unlock it"
            ) from None
        except p11.PKCS11Error as exc:
            raise CAKeyError(
                f"cannot log in to the token {self.token_label!r} ({type(exc).__name__})"
            ) from None
        self._session, self._generation = session, self.library.generation
        logger.info("opened a session with the token %r", self.token_label)
        return session

    def _open_without_login(self, token):
        try:
            return token.open(rw=True)
        except p11.PKCS11Error as exc:
            raise CAKeyError(
                f"cannot open a session with the token {self.token_label!r} ({type(exc).__name__})"
            ) from None


def read_pin(pin: str, pin_file: str) -> str:
    """The PIN: given, or the first line of pin_file; CAKeyError if neither (never the PIN
    itself in a message)."""
    if pin:
        return pin
    if pin_file:
        try:
            text = Path(pin_file).read_text()
        except OSError as exc:
            raise CAKeyError(
                f"cannot read the PIN file named by PKCS11_PIN_FILE: {exc.strerror or exc}"
            ) from None
        found = text.splitlines()[0].strip() if text.strip() else ""
        if found:
            return found
        raise CAKeyError("the PIN file named by PKCS11_PIN_FILE is empty")
    raise CAKeyError("no PIN for the token: set PKCS11_PIN or PKCS11_PIN_FILE")
