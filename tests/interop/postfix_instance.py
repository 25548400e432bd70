"""A private, throwaway Postfix instance on loopback that relays all mail to one next hop.

The instance has its own config, queue and data directories and its own log file, and runs its
own ``master`` as a subprocess of the test, so it never touches /etc/postfix, /var/spool/postfix
or a system Postfix that may be running. It listens on no network port at all: mail enters
through its ``sendmail`` (postdrop into its own maildrop, then pickup), and leaves through its
SMTP client to ``relayhost``.

Postfix must be started as root (master binds its sockets and drops to ``mail_owner``), and
its daemons run as the ``postfix`` user with absolute paths into the queue and data
directories. Pytest's ``tmp_path`` lies under /tmp/pytest-of-<user>, which pytest makes
mode 0700, so the ``postfix`` user cannot reach anything below it. The instance therefore
lives in its own directory from :func:`tempfile.mkdtemp` (mode 0711, removed on exit); only
that directory and what Postfix's own ``post-install create-missing`` makes in it are chowned.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

import attrs

#: Where Debian (and most systems) put postfix, postconf and sendmail; often not on a user's
#: PATH, which is searched first.
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])

#: Postfix 3.6 introduced the compatibility level written below; ``master -s`` (foreground
#: with a log file) and ``maillog_file`` came in 3.4. Debian 12 ships 3.7.
MINIMUM_VERSION = (3, 6)

#: Upper bound for ``postfix check``, for master to start and for it to stop; each normally
#: takes well under a second.
COMMAND_BOUND = 30.0

#: The stock master.cf services that relaying needs, with chroot off (a chroot would need
#: copies of /etc files in the queue directory) and without local, virtual, lmtp and pipe
#: delivery: this instance delivers nowhere but to ``relayhost``. No ``inet`` service, so
#: the instance binds no TCP port.
MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command + args
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


@attrs.frozen
class PostfixCommands:
    """Paths to the installed Postfix's programs, as its own ``postconf`` reports them."""

    postfix: Path
    postconf: Path
    master: Path
    sendmail: Path
    version: tuple[int, ...]


def find_postfix() -> PostfixCommands | None:
    """The installed Postfix, or None when there is none (the tests then skip, outside CI)."""
    postfix = shutil.which("postfix", path=SBIN_PATH)
    postconf = shutil.which("postconf", path=SBIN_PATH)
    if postfix is None or postconf is None:
        return None
    result = subprocess.run(
        [postconf, "-d", "-h", "mail_version", "daemon_directory", "sendmail_path"],
        capture_output=True,
        text=True,
        timeout=COMMAND_BOUND,
        check=True,
    )
    version, daemon_directory, sendmail = result.stdout.split()
    return PostfixCommands(
        postfix=Path(postfix),
        postconf=Path(postconf),
        master=Path(daemon_directory) / "master",
        sendmail=Path(sendmail),
        version=tuple(int(part) for part in re.findall(r"\d+", version)[:3]),
    )


def main_cf(root: Path, *, relayhost: str, ca_file: Path) -> dict[str, str]:
    """The instance's main.cf: relay everything over verified-chain TLS, deliver nothing here."""
    return {
        "compatibility_level": "3.6",
        # Everything this instance owns lives under root, nothing under /etc or /var.
        "queue_directory": str(root / "queue"),
        "data_directory": str(root / "data"),
        "mail_owner": "postfix",
        "setgid_group": "postdrop",
        # Its own names, so nothing comes from the host's name or DNS.
        "myhostname": "relay.test",
        "mydomain": "relay.test",
        "myorigin": "$myhostname",
        # No local domains, no local delivery, no alias lookups: every recipient is remote.
        "mydestination": "",
        "local_recipient_maps": "",
        "local_transport": "error:5.1.1 local delivery is disabled",
        "alias_maps": "",
        "alias_database": "",
        "biff": "no",
        # Loopback only, IPv4 only (containers often lack IPv6 on lo).
        "inet_interfaces": "loopback-only",
        "inet_protocols": "ipv4",
        # The square brackets mean "this host, no MX lookup"; an address needs no DNS at all.
        "relayhost": relayhost,
        # "encrypt": STARTTLS is mandatory, so a server that does not offer it gets no mail.
        # With CAfile the log says whether the chain verified ("Trusted") or not ("Untrusted").
        "smtp_tls_security_level": "encrypt",
        "smtp_tls_CAfile": str(ca_file),
        "smtp_tls_loglevel": "1",
        # If trimail never answers, the deferral is logged after this, well inside the
        # test's bound (the default is 30s).
        "smtp_connect_timeout": "10s",
        # No syslog in containers: postlogd writes this file (the prefix must allow it).
        "maillog_file": str(root / "postfix.log"),
        "maillog_file_prefixes": str(root),
    }


@attrs.frozen
class PostfixInstance:
    commands: PostfixCommands
    root: Path
    config_dir: Path
    log_file: Path
    process: subprocess.Popen[bytes]

    @property
    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def sendmail(self, sender: str, recipient: str, message: bytes) -> None:
        """Submit ``message`` like a local program would (``-i``: a lone dot is just a line)."""
        result = subprocess.run(
            [
                str(self.commands.sendmail),
                "-C",
                str(self.config_dir),
                "-i",
                "-f",
                sender,
                "--",
                recipient,
            ],
            input=message,
            capture_output=True,
            timeout=COMMAND_BOUND,
            check=False,
        )
        assert result.returncode == 0, f"sendmail failed: {result.stderr!r}\n{self.log}"


def _write_config(root: Path, config_dir: Path, settings: Mapping[str, str]) -> None:
    config_dir.mkdir()
    (root / "queue").mkdir()
    lines = (f"{name} = {value}\n" for name, value in settings.items())
    (config_dir / "main.cf").write_text("".join(lines))
    (config_dir / "master.cf").write_text(MASTER_CF)


def _check_traversable(root: Path) -> None:
    """Fail clearly, rather than with a silent master exit, if TMPDIR is not reachable by
    the postfix user (e.g. TMPDIR inside a mode 0700 directory)."""
    for directory in root.parents:
        if not directory.stat().st_mode & stat.S_IXOTH:
            raise RuntimeError(f"{directory} is not searchable by others; set TMPDIR elsewhere")


def _check(commands: PostfixCommands, config_dir: Path, log_file: Path) -> None:
    """``postfix check`` runs ``post-install create-missing``: it makes the queue and data
    subdirectories with the owners and modes this Postfix version expects, and validates
    the configuration before master is started on it."""
    result = subprocess.run(
        [str(commands.postfix), "-c", str(config_dir), "check"],
        capture_output=True,
        text=True,
        timeout=COMMAND_BOUND,
        check=False,
    )
    if result.returncode != 0:
        log = log_file.read_text() if log_file.exists() else ""
        raise RuntimeError(f"postfix check failed:\n{result.stdout}{result.stderr}{log}")


def _wait_for_start(instance: PostfixInstance) -> None:
    deadline = time.monotonic() + COMMAND_BOUND
    while "daemon started" not in instance.log:
        if instance.process.poll() is not None or time.monotonic() > deadline:
            output = (instance.root / "master.out").read_text(errors="replace")
            raise RuntimeError(f"postfix master did not start:\n{output}{instance.log}")
        time.sleep(0.05)


def _group_has_live_members(pgid: int) -> bool:
    """Whether a process other than a zombie is still in the process group (Linux /proc)."""
    for process_stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError):
            # The command name (field 2) is parenthesised and may hold spaces: split after it.
            state, _ppid, group = process_stat.read_text().rpartition(")")[2].split()[:3]
            if int(group) == pgid and state != "Z":
                return True
    return False


def _wait_for_group_to_end(pgid: int) -> None:
    deadline = time.monotonic() + COMMAND_BOUND
    while _group_has_live_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM is what ``postfix stop`` sends master; master passes it on to its process
    group and exits. Master leads its own session and group (``start_new_session``), so a
    SIGKILL to that group reaches any straggler and nothing else, as long as master is not
    yet reaped: until then its PID, and so the group ID, cannot be reused."""
    if process.returncode is None:
        with suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        _wait_for_group_to_end(process.pid)
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=COMMAND_BOUND)
    _wait_for_group_to_end(process.pid)


@contextmanager
def postfix_relay(
    commands: PostfixCommands, *, relayhost: str, ca_file: Path
) -> Iterator[PostfixInstance]:
    """Run a private Postfix that relays to ``relayhost`` with mandatory TLS, checking the
    server's chain against ``ca_file``; stopped and removed on exit, whatever happened."""
    if commands.version < MINIMUM_VERSION:
        raise RuntimeError(f"Postfix {commands.version} is older than {MINIMUM_VERSION}")
    root = Path(tempfile.mkdtemp(prefix="trimail-postfix-"))
    try:
        root.chmod(0o711)  # traversable by the postfix user, listable by no one else
        _check_traversable(root)
        config_dir, log_file = root / "conf", root / "postfix.log"
        # The smtp client reads the CA file; keep a copy where the postfix user can reach it.
        ca_copy = root / "ca.pem"
        shutil.copyfile(ca_file, ca_copy)
        ca_copy.chmod(0o644)
        _write_config(root, config_dir, main_cf(root, relayhost=relayhost, ca_file=ca_copy))
        _check(commands, config_dir, log_file)
        with (root / "master.out").open("wb") as output:
            process = subprocess.Popen(
                # -s: stay in the foreground (as "postfix start-fg" runs it) so the test
                # owns the process and can always stop it.
                [str(commands.master), "-c", str(config_dir), "-s"],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            instance = PostfixInstance(commands, root, config_dir, log_file, process)
            _wait_for_start(instance)
            yield instance
        finally:
            _stop(process)
    finally:
        shutil.rmtree(root)
