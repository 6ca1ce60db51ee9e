"""relay/tls.py's start-up half: which certificate and key files the relay accepts."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from ferry.errors import EXIT_TLS_FILES, BadTlsFiles
from ferry.relay import tls
from ferry_testing.certs import Certs, make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def test_a_certificate_and_its_key_make_a_server_context(certs: Certs) -> None:
    context = tls.server_context(str(certs.cert), str(certs.key))
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


def _encrypted_key(certs: Certs, path: Path) -> Path:
    key = serialization.load_pem_private_key(certs.key.read_bytes(), None)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    return path


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        ("missing cert", "--tls-cert {cert}: No such file or directory"),
        ("missing key", "--tls-key {key}: No such file or directory"),
        ("cert is a key", "--tls-cert {cert}: not a PEM certificate"),
        ("key is a cert", "--tls-key {key}: not a PEM private key"),
        ("another key", "--tls-key {key} is not the key of --tls-cert {cert}"),
        ("encrypted key", "--tls-key {key}: the key is encrypted; give it unencrypted"),
        ("huge cert", "--tls-cert {cert}: not a PEM certificate"),
    ],
)
def test_files_the_relay_cannot_use_are_one_line_with_exit_code_14(
    broken: str, expected: str, certs: Certs, tmp_path: Path
) -> None:
    cert, key = certs.cert, certs.key
    if broken == "missing cert":
        cert = tmp_path / "none.pem"
    elif broken == "missing key":
        key = tmp_path / "none.key"
    elif broken == "cert is a key":
        cert = certs.key
    elif broken == "key is a cert":
        key = certs.cert
    elif broken == "another key":
        key = make_certs(tmp_path / "other").key
    elif broken == "encrypted key":
        key = _encrypted_key(certs, tmp_path / "encrypted.key")
    else:
        cert = tmp_path / "huge.pem"
        cert.write_bytes(certs.cert.read_bytes() + b"\n" * tls.MAX_PEM)
    with pytest.raises(BadTlsFiles) as raised:
        tls.server_context(str(cert), str(key))
    assert raised.value.message.startswith(expected.format(cert=cert, key=key))
    assert "\n" not in raised.value.message
    assert raised.value.exit_code == EXIT_TLS_FILES == 14
