"""Every error Tipbox raises on purpose.

Each class's docstring is the sentence a user sees when no more specific message is given; the
CLI prints it as ``tipbox: error: …`` (plus ``tipbox: hint: …`` when the class has a hint) and the
web apps turn them into a generic translated error page. Nothing here imports anything, so the
air-gapped command can use it.
"""

from __future__ import annotations


class TipboxError(Exception):
    """something went wrong"""

    hint: str | None = None

    def __init__(self, message: str | None = None, *, hint: str | None = None) -> None:
        text = message if message is not None else (type(self).__doc__ or "").strip()
        super().__init__(text)
        self.message = text
        if hint is not None:
            self.hint = hint


class ConfigError(TipboxError):
    """the configuration is not valid"""


class UsageError(TipboxError):
    """the command was not used correctly"""

    hint = "run 'tipbox --help' for usage"


class CryptoError(TipboxError):
    """the data could not be encrypted or decrypted"""


class KeyFormatError(CryptoError):
    """the key is not a valid age recipient or identity"""


class HeaderError(CryptoError):
    """the file is not a valid age file: its header is malformed"""


class UnsupportedVersionError(HeaderError):
    """the file is not an age v1 file"""


class ArmorError(CryptoError):
    """the file is not a valid ASCII-armored age file"""


class HeaderMACError(CryptoError):
    """the file's header failed authentication: it was altered after it was written"""


class NoIdentityMatchError(CryptoError):
    """no identity matches any of the file's recipients: wrong key or passphrase"""

    hint = "check that you used the identity (secret key) this file was encrypted to"


class PayloadError(CryptoError):
    """the encrypted payload is damaged"""


class TruncatedError(PayloadError):
    """the file is truncated: it ends before its last chunk"""


class TamperedChunkError(PayloadError):
    """a chunk of the file failed authentication: the file was altered or damaged"""


class ChunkOrderError(PayloadError):
    """the file's chunks are out of order: the file was rearranged"""


class TrailingDataError(PayloadError):
    """the file has extra data after its end: something was appended to it"""


class EmptyChunkError(PayloadError):
    """the file ends with an empty chunk, which age v1 forbids"""


class PassphraseError(TipboxError):
    """the passphrase was not accepted"""


class BundleError(TipboxError):
    """the bundle is damaged or is not a Tipbox bundle"""

    hint = "copy the bundle again from the journalist app"


class ItemError(TipboxError):
    """the item is damaged: it does not hold one regular file"""


class ReplyError(TipboxError):
    """the file is not a valid reply for this source"""


class StoreError(TipboxError):
    """the data store refused the operation"""


class DigestError(TipboxError):
    """the daily digest could not be sent"""
