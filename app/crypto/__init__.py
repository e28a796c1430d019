"""Tipbox's envelope: age v1 files (age-encryption.org/v1), written and read in pure Python.

Every stored item (message, file, reply) is an age v1 file, so a journalist can always fall back
on the standard ``age`` tool. This package has no Flask, no stem and no file paths: it streams
from any readable to any writable and leaves where the bytes live to its callers.

Format, as implemented here::

    age-encryption.org/v1\\n
    -> mlkem768x25519 <enc, base64>\\n              (one stanza per recipient, in any number:
    <file key wrapped, base64, 64 columns,          all hybrid, or all X25519)
     last line shorter (maybe empty)>\\n
    -> X25519 <ephemeral share, base64>\\n
    <file key wrapped>\\n
    -> scrypt <salt, base64> <log2 N>\\n             (or one passphrase stanza, alone)
    <file key wrapped>\\n
    --- <HMAC-SHA-256 of everything above up to "---", base64>\\n
    <16-byte nonce><payload>

- base64 is the standard alphabet without padding and must be canonical; lines end in LF.
- The file key is 16 random bytes. The header MAC key is HKDF-SHA-256(file key, salt "",
  info "header").
- mlkem768x25519 (post-quantum, the default): enc and body are HPKE SealBase of the file key
  with the MLKEM768-X25519 (X-Wing) KEM, HKDF-SHA256 and ChaCha20Poly1305, info
  "age-encryption.org/mlkem768x25519"; enc is 1,120 bytes, the body 32 (:mod:`.hybrid`,
  :mod:`.hpke`). Recipients that do and do not carry the ``postquantum`` label never share a
  file (age's rule), so a hybrid file has no classical stanza.
- X25519: ``shared = X25519(ephemeral, recipient)`` (all-zero rejected); wrap key is
  HKDF-SHA-256(shared, salt share || recipient, info "age-encryption.org/v1/X25519");
  the body is ChaCha20-Poly1305(wrap key, zero nonce, file key), 32 bytes.
- scrypt: key = scrypt(passphrase, salt "age-encryption.org/v1/scrypt" || salt, N=2^w, r=8,
  p=1); body as above. Work factors are decimal without leading zeros, at most 22 to decrypt.
- Payload key: HKDF-SHA-256(file key, salt nonce, info "payload"). The plaintext is cut into
  64 KiB chunks, each sealed with ChaCha20-Poly1305 under nonce = 11-byte big-endian chunk
  number || 0x01 for the last chunk, 0x00 otherwise. Only the last chunk may be short, and it
  is empty only when the whole plaintext is.
- Keys are Bech32: recipients ``age1pq1…`` / ``age1…`` (lowercase), identities
  ``AGE-SECRET-KEY-PQ-1…`` / ``AGE-SECRET-KEY-1…`` (uppercase). A passphrase-protected identity
  is an age file encrypted to an scrypt stanza whose payload is the identity text, as ``age -p``
  writes it.
- ASCII armor: strict PEM, "AGE ENCRYPTED FILE", 64 columns (:mod:`.armor`); read where a file
  comes from a user (``tipbox decrypt``), written on request (``tipbox encrypt -a``), never
  stored.
"""

from app.crypto.derive import KdfCost, SourceKeys, derive_source_keys
from app.crypto.envelope import Writer, decrypt, encrypt, open_payload
from app.crypto.hybrid import HybridIdentity, HybridRecipient
from app.crypto.keyfile import (
    encrypt_identity,
    is_age_file,
    parse_identities,
    parse_recipients,
)
from app.crypto.recipients import (
    Identity,
    Recipient,
    ScryptIdentity,
    ScryptRecipient,
    X25519Identity,
    X25519Recipient,
)

__all__ = [
    "HybridIdentity",
    "HybridRecipient",
    "Identity",
    "KdfCost",
    "Recipient",
    "ScryptIdentity",
    "ScryptRecipient",
    "SourceKeys",
    "Writer",
    "X25519Identity",
    "X25519Recipient",
    "decrypt",
    "derive_source_keys",
    "encrypt",
    "encrypt_identity",
    "is_age_file",
    "open_payload",
    "parse_identities",
    "parse_recipients",
]
