"""Key files: the one way a key file becomes key bytes, and how a new key file is written.

Decoding order (the same for the cluster key and the gossip key, wherever a key file is read):

1. drop whitespace around the file's contents;
2. if what is left is hexadecimal (digits and a-f/A-F, an even number of them), the key is
   those bytes decoded from hex;
3. else, if it is strict base64 (standard alphabet, padded), the key is the decoded bytes;
4. else the key is the bytes themselves (a passphrase, or raw binary).

So a file of 32 hex characters is a 16-byte key everywhere.  ``axon keygen`` writes 32 random
bytes as base64; its 44 characters end in '=', so they are never read as hex.

A key file must be private: one that group or others may read or write is refused, because
the key would be exposed (or replaceable) and the node could not tell.
"""
from __future__ import annotations

import base64
import binascii
import os
import re
import stat

KEY_BYTES = 32          # what `axon keygen` writes
MIN_KEY_BYTES = 16
MAX_KEY_FILE_BYTES = 4096   # a key file is small; a bigger one is the wrong file
_HEX = re.compile(rb"(?:[0-9A-Fa-f]{2})+")


class KeyFileError(ValueError):
    """A key file is missing, unreadable, not private, or holds no usable key."""


def decode_key(contents: bytes) -> bytes:
    """A key file's contents -> the key, in the documented order: hex, else base64, else as is."""
    text = contents.strip()
    if _HEX.fullmatch(text):
        return bytes.fromhex(text.decode("ascii"))
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        return text


def load_key(path: str | os.PathLike, what: str = "key") -> bytes:
    """Read a private key file and decode it (see :func:`decode_key`); raises KeyFileError."""
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            contents = f.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise KeyFileError(f"cannot read {what} file {path}: {exc.strerror or exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{what} file {path} is accessible by group or others "
                           f"(mode {stat.S_IMODE(mode):04o}): run chmod 600 {path}")
    if len(contents) > MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"{what} file {path} is larger than {MAX_KEY_FILE_BYTES} bytes; "
                           f"is it the right file?")
    key = decode_key(contents)
    if len(key) < MIN_KEY_BYTES:
        raise KeyFileError(f"{what} in {path} is too short: use at least {MIN_KEY_BYTES} bytes "
                           f"(`axon keygen` writes a good one)")
    return key


def new_key() -> bytes:
    """32 random bytes from the operating system's CSPRNG."""
    return os.urandom(KEY_BYTES)


def encode_key(key: bytes) -> bytes:
    """The key file form of a key: base64 and a newline."""
    return base64.b64encode(key) + b"\n"


def write_key_file(path: str | os.PathLike, key: bytes) -> None:
    """Create path with mode 0600 holding the key; raises KeyFileError if it exists or cannot be made."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists; not overwriting a key") from None
    except OSError as exc:
        raise KeyFileError(f"cannot create {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)   # whatever the umask did, the mode is exactly 0600
            f.write(encode_key(key))
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        os.unlink(path)
        raise KeyFileError(f"cannot write {path}: {exc.strerror or exc}") from None
