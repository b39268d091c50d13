"""``xos-ca``: create, inspect, export and rotate the CA directory.

The passphrase comes from ``--passphrase-file`` or the environment variable named by
``--passphrase-env`` (default ``XOS_CA_PASSPHRASE``); it is never a command-line value,
which other users could read in the process list.
"""

from __future__ import annotations

import os
from pathlib import Path

import click
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from .directory import CADirectory
from .errors import CAError
from .store import read_passphrase

DEFAULT_DIR = os.path.join(os.environ.get("XOS_INSTANCE_PATH", "instance"), "ca")


def _passphrase(file: str | None, env: str) -> bytes:
    return read_passphrase(file=file) if file else read_passphrase(env=env)


def _describe(cert: x509.Certificate) -> str:
    return (f"{cert.subject.rfc4514_string()}\n"
            f"    valid {cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d}"
            f", SHA-256 {cert.fingerprint(hashes.SHA256()).hex(':')}")


directory_option = click.option("--dir", "path", default=DEFAULT_DIR, show_default=True,
                                type=click.Path(file_okay=False, path_type=Path),
                                help="The CA directory.")
passphrase_options = [
    click.option("--passphrase-file", type=click.Path(dir_okay=False),
                 help="File holding the key passphrase."),
    click.option("--passphrase-env", default="XOS_CA_PASSPHRASE", show_default=True,
                 help="Environment variable holding the passphrase."),
]


def with_passphrase(f):  # type: ignore[no-untyped-def]
    for option in reversed(passphrase_options):
        f = option(f)
    return f


@click.group(help="The XOS certificate authority: root, issuing and SSH CAs.")
def main() -> None: ...


@main.command(help="Create a root CA, an issuing CA and an SSH CA in a new directory.")
@directory_option
@click.option("--name", required=True, help="Organisation name, e.g. 'Grid Example'.")
@with_passphrase
def init(path: Path, name: str, passphrase_file: str | None, passphrase_env: str) -> None:
    try:
        CADirectory.init(path, name, _passphrase(passphrase_file, passphrase_env))
    except CAError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"created CA in {path}")
    _show(CADirectory(path))


@main.command(help="Show the CA certificates and SSH CA keys.")
@directory_option
def show(path: Path) -> None:
    try:
        _show(CADirectory(path))
    except CAError as error:
        raise click.ClickException(str(error)) from None


def _show(directory: CADirectory) -> None:
    click.echo("root: " + _describe(directory.root_certificate()))
    click.echo("root key: " + ("online, " + str(directory.path / "root.key")
                               if (directory.path / "root.key").exists() else "offline"))
    current = directory.current("issuing")
    for generation, cert in sorted(directory.issuer_certificates().items()):
        mark = " (current)" if generation == current else ""
        click.echo(f"issuing {generation}{mark}: " + _describe(cert))
    for line in directory.ssh_public_lines():
        click.echo("ssh ca: " + line)


@main.command(help="Print public material: root, chain (current issuing CA and root) or ssh.")
@directory_option
@click.argument("what", type=click.Choice(["root", "chain", "ssh"]))
def export(path: Path, what: str) -> None:
    try:
        directory = CADirectory(path)
        if what == "ssh":
            click.echo("\n".join(directory.ssh_public_lines()))
            return
        certs = [directory.root_certificate()]
        if what == "chain":
            certs.insert(0, directory.issuer_certificates()[directory.current("issuing")])
    except CAError as error:
        raise click.ClickException(str(error)) from None
    click.echo(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs).decode(),
               nl=False)


@main.command(help="Make a new issuing CA (needs the root key) or, with --ssh, a new SSH CA.")
@directory_option
@click.option("--ssh", is_flag=True, help="Rotate the SSH CA key instead.")
@click.option("--root-key", type=click.Path(dir_okay=False, path_type=Path),
              help="The root key, when it is kept offline.")
@with_passphrase
def rotate(path: Path, ssh: bool, root_key: Path | None, passphrase_file: str | None,
           passphrase_env: str) -> None:
    try:
        directory = CADirectory(path)
        passphrase = _passphrase(passphrase_file, passphrase_env)
        if ssh:
            generation = directory.rotate_ssh(passphrase)
            click.echo(f"ssh ca generation {generation} is current; nodes must fetch the new"
                       " trusted key list")
        else:
            generation = directory.rotate_issuing(passphrase, root_key=root_key)
            click.echo(f"issuing CA generation {generation} is current")
    except CAError as error:
        raise click.ClickException(str(error)) from None
    click.echo("running VO service processes load it at their next request")
