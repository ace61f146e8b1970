"""Throw-away certificates for the lab's HTTPS listeners: a CA, and a
certificate for 127.0.0.1 signed by it (openssl; valid two days)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def make_ca(d: Path, name: str) -> tuple[Path, Path]:
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={name}", "-keyout", str(d / f"{name}.key"),
                    "-out", str(d / f"{name}.pem")], check=True, capture_output=True)
    return d / f"{name}.pem", d / f"{name}.key"


def make_cert(d: Path, ca_pem: Path, ca_key: Path) -> tuple[Path, Path]:
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
                    "-keyout", str(d / "agent.key"), "-out", str(d / "agent.csr")],
                   check=True, capture_output=True)
    (d / "san.ext").write_text("subjectAltName = IP:127.0.0.1\n")
    subprocess.run(["openssl", "x509", "-req", "-in", str(d / "agent.csr"), "-CA", str(ca_pem),
                    "-CAkey", str(ca_key), "-CAcreateserial", "-days", "2",
                    "-extfile", str(d / "san.ext"), "-out", str(d / "agent.pem")],
                   check=True, capture_output=True)
    return d / "agent.pem", d / "agent.key"
