"""A private slapd for tests, examples and benchmarks: temp dir, free ports, test TLS.

:class:`Slapd` writes a throw-away OpenLDAP configuration (back-mdb plus the
monitor backend) into a temporary directory, loads ~1000 entries offline with
``slapadd``, and runs ``slapd`` in the foreground as a child of this process,
listening on 127.0.0.1 only: ``ldap://`` (plain and StartTLS) and
``ldaps://``, each on a free port.  A test CA and a server certificate are
generated at start with the ``openssl`` command.

The instance can be stopped, killed, paused (SIGSTOP), resumed, restarted on
the same ports, and a password can be changed.  Every signal goes to the PID
of the child this object started, never to a process found by name.

All waits go through gevent (``gevent.subprocess``, ``gevent.sleep``), so the
helper never blocks the hub of the calling process for long; it is not
thread-safe.  Needs the Debian packages ``slapd``, ``ldap-utils`` and ``openssl``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Sequence

import gevent
from gevent import subprocess

from .ports import free_port as _free_port

__all__ = [
    "Slapd",
    "SlapdError",
    "TestCA",
    "free_port",
    "SUFFIX",
    "ADMIN_DN",
    "ADMIN_PW",
    "SERVICE_DN",
    "SERVICE_PW",
    "USER_PW",
    "user_dn",
]

SUFFIX = "dc=example,dc=com"
ADMIN_DN = f"cn=admin,{SUFFIX}"
ADMIN_PW = "adminpw"
SERVICE_DN = f"uid=svc1,ou=services,{SUFFIX}"
SERVICE_PW = "svcpw"
USER_PW = "userpw"
_SLAPD = "/usr/sbin/slapd"
_SLAPADD = "/usr/sbin/slapadd"
_SCHEMAS = ("core", "cosine", "inetorgperson", "nis")
_EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")


def user_dn(number: int) -> str:
    """Return the DN of test user ``number`` (0-based): ``uid=user0042,ou=people,...``."""
    return f"uid=user{number:04d},ou=people,{SUFFIX}"


def service_dn(number: int) -> str:
    """Return the DN of service account ``number`` (1-based)."""
    return f"uid=svc{number},ou=services,{SUFFIX}"


class SlapdError(RuntimeError):
    """slapd or one of the OpenLDAP tools failed; the message has its output."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (outside the ephemeral range)."""
    return _free_port()


def _run(args: Sequence[str], stdin: str | None = None, timeout: float = 60.0) -> str:
    proc = subprocess.run(
        list(args),
        input=stdin.encode() if stdin is not None else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=timeout,
        check=False,
    )
    out: str = proc.stdout.decode(errors="replace")
    if proc.returncode != 0:
        raise SlapdError(f"{args[0]} exited with {proc.returncode}: {out.strip()}")
    return out


class TestCA:
    """A throw-away certificate authority made with the ``openssl`` command.

    ``issue(name, hosts)`` writes ``<name>.crt`` and ``<name>.key`` signed by
    this CA, with ``hosts`` as subjectAltName (IP addresses and DNS names);
    ``days`` may be negative for an expired certificate.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, directory: str, name: str = "ca") -> None:
        self.directory = directory
        self.cert_file = os.path.join(directory, f"{name}.crt")
        self.key_file = os.path.join(directory, f"{name}.key")
        self._serial = int(time.time() * 1000) % 1_000_000_000
        _run([
            "openssl", "req", "-x509", *_EC_KEY, "-nodes", "-sha256",
            "-days", "30", "-subj", f"/CN=geventpool test {name}",
            "-keyout", self.key_file, "-out", self.cert_file,
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ])

    def issue(
        self, name: str, hosts: Sequence[str] = ("localhost", "127.0.0.1"), days: int = 30,
        common_name: str | None = None,
    ) -> tuple[str, str]:
        """Issue a certificate; return ``(cert_file, key_file)``."""
        cert = os.path.join(self.directory, f"{name}.crt")
        key = os.path.join(self.directory, f"{name}.key")
        csr = os.path.join(self.directory, f"{name}.csr")
        ext = os.path.join(self.directory, f"{name}.ext")
        cn = common_name or (hosts[0] if hosts else name)
        _run(["openssl", "req", *_EC_KEY, "-nodes", "-sha256",
              "-subj", f"/CN={cn}", "-keyout", key, "-out", csr])
        sans = ",".join(
            f"IP:{h}" if h.replace(".", "").isdigit() or ":" in h else f"DNS:{h}" for h in hosts
        )
        lines = ["basicConstraints=CA:FALSE", "keyUsage=digitalSignature,keyEncipherment",
                 "extendedKeyUsage=serverAuth,clientAuth"]
        if sans:
            lines.append(f"subjectAltName={sans}")
        with open(ext, "w") as f:
            f.write("\n".join(lines) + "\n")
        self._serial += 1
        if days >= 1:
            _run(["openssl", "x509", "-req", "-in", csr, "-CA", self.cert_file, "-CAkey", self.key_file,
                  "-set_serial", str(self._serial), "-days", str(days), "-sha256",
                  "-extfile", ext, "-out", cert])
        else:
            self._issue_expired(csr, ext, cert)
        os.chmod(key, 0o600)
        return cert, key

    def _issue_expired(self, csr: str, ext: str, cert: str) -> None:
        # `openssl x509` cannot back-date; `openssl ca` takes explicit dates.
        base = os.path.join(self.directory, "ca-db")
        os.makedirs(base, exist_ok=True)
        open(os.path.join(base, "index.txt"), "w").close()
        with open(os.path.join(base, "serial"), "w") as f:
            f.write(f"{self._serial:08X}\n")
        conf = os.path.join(base, "ca.cnf")
        with open(conf, "w") as f:
            f.write(
                "[ca]\ndefault_ca=test\n[test]\n"
                f"dir={base}\ndatabase={base}/index.txt\nserial={base}/serial\n"
                f"new_certs_dir={base}\ndefault_md=sha256\npolicy=any\n"
                "unique_subject=no\ncopy_extensions=none\n[any]\ncommonName=supplied\n"
            )
        _run(["openssl", "ca", "-batch", "-config", conf, "-cert", self.cert_file, "-keyfile", self.key_file,
              "-startdate", "20200101000000Z", "-enddate", "20200201000000Z",
              "-extfile", ext, "-in", csr, "-out", cert, "-notext"])


@dataclass
class _Paths:
    root: str
    conf: str
    ldif: str
    db: str
    log: str


class Slapd:
    """A private slapd on 127.0.0.1 (see the module docstring).

    ``users`` entries ``uid=userNNNN,ou=people,dc=example,dc=com`` (password
    ``userpw``) and three service accounts ``uid=svcN,ou=services,...``
    (password ``svcpw``) are loaded; ``cn=admin,dc=example,dc=com`` (password
    ``adminpw``) is the root DN.  ``cert_hosts`` are the server certificate's
    subjectAltNames; ``cert_days`` < 1 makes it expired; ``tls_cipher_suite`` is
    slapd's ``TLSCipherSuite`` (a GnuTLS priority string here, such as
    ``NORMAL:-VERS-ALL:+VERS-TLS1.2`` for a server that speaks TLS 1.2 only).  ``idle_timeout``
    sets slapd's ``idletimeout``; ``stats_log`` logs every operation to
    :attr:`log_file` (and costs throughput).  Use it as a context manager, or
    call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        users: int = 1000,
        *,
        tls: bool = True,
        cert_hosts: Sequence[str] = ("localhost", "127.0.0.1"),
        cert_days: int = 30,
        idle_timeout: int = 0,
        stats_log: bool = False,
        threads: int = 8,
        directory: str | None = None,
        tls_cipher_suite: str | None = None,
    ) -> None:
        self.users = users
        self.tls_cipher_suite = tls_cipher_suite
        self.tls = tls
        self.cert_hosts = tuple(cert_hosts)
        self.cert_days = cert_days
        self.idle_timeout = idle_timeout
        self.stats_log = stats_log
        self.threads = threads
        self._own_dir = directory is None
        root = directory or tempfile.mkdtemp(prefix="geventpool-slapd-")
        self._paths = _Paths(
            root=root,
            conf=os.path.join(root, "slapd.conf"),
            ldif=os.path.join(root, "data.ldif"),
            db=os.path.join(root, "db"),
            log=os.path.join(root, "slapd.log"),
        )
        self.port = 0
        self.ldaps_port = 0
        self.ca: TestCA | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_handle: object = None
        self._prepared = False

    # -- addresses -------------------------------------------------------------------------

    @property
    def uri(self) -> str:
        """``ldap://127.0.0.1:<port>`` (plain, and StartTLS when TLS is on)."""
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_uri(self) -> str:
        """``ldaps://127.0.0.1:<port>``."""
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    @property
    def ca_file(self) -> str:
        """The test CA's certificate (PEM), to verify the server with."""
        if self.ca is None:
            raise SlapdError("this slapd has no TLS")
        return self.ca.cert_file

    @property
    def directory(self) -> str:
        """The instance's temporary directory."""
        return self._paths.root

    @property
    def log_file(self) -> str:
        """slapd's stderr (with ``stats_log``: one line per operation)."""
        return self._paths.log

    @property
    def pid(self) -> int | None:
        """The PID of the running slapd, or None."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> Slapd:
        """Write the configuration (first time only), start slapd, wait until it answers."""
        if self.pid is not None:
            return self
        if not self._prepared:
            self._prepare()
        self._log_handle = open(self._paths.log, "ab")  # noqa: SIM115 - closed in _reap
        urls = f"ldap://127.0.0.1:{self.port}/"
        if self.tls:
            urls += f" ldaps://127.0.0.1:{self.ldaps_port}/"
        debug = "256" if self.stats_log else "0"
        self._proc = subprocess.Popen(
            [_SLAPD, "-d", debug, "-f", self._paths.conf, "-h", urls],
            stdin=subprocess.DEVNULL,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Poll (every 20 ms) until slapd answers a WhoAmI on its plain port."""
        deadline = time.monotonic() + timeout
        while True:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                raise SlapdError(f"slapd exited at start; log:\n{self._tail_log()}")
            if self._answers():
                return
            if time.monotonic() > deadline:
                raise SlapdError(f"slapd did not answer within {timeout} s; log:\n{self._tail_log()}")
            gevent.sleep(0.02)

    def _answers(self) -> bool:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=0.2)
        except OSError:
            return False
        sock.close()
        try:
            self.whoami(ADMIN_DN, ADMIN_PW, timeout=5)
        except SlapdError:
            return False
        return True

    def stop(self, timeout: float = 30.0) -> None:
        """Stop slapd cleanly (SIGINT; SIGKILL after ``timeout``) and wait for it to exit."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal(signal.SIGCONT)
            self._signal(signal.SIGINT)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                proc.wait()
        self._reap()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` (default SIGKILL) and, for a fatal signal, wait for the exit."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        self._signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
            if sig != signal.SIGKILL:
                self._signal(signal.SIGCONT)
            proc.wait()
            self._reap()

    def pause(self, timeout: float = 5.0) -> None:
        """Freeze slapd (SIGSTOP): connections stay open, nothing is answered.

        Returns once every thread of slapd is stopped: the signal is asynchronous, and a worker
        thread running on another CPU could otherwise still answer a request sent right after it.
        """
        self._signal(signal.SIGSTOP)
        pid = self.pid
        if pid is None:
            return
        deadline = time.monotonic() + timeout
        while not _all_threads_stopped(pid):
            if time.monotonic() > deadline:
                raise SlapdError(f"slapd {pid} did not stop within {timeout:g} s of SIGSTOP")
            gevent.sleep(0.001)

    def resume(self) -> None:
        """Unfreeze slapd (SIGCONT)."""
        self._signal(signal.SIGCONT)

    def restart(self, graceful: bool = True, timeout: float = 30.0) -> None:
        """Stop (SIGINT, or SIGKILL when not ``graceful``) and start again on the same ports."""
        if graceful:
            self.stop()
        else:
            self.kill()
        self.start(timeout)

    def close(self) -> None:
        """Stop slapd (SIGKILL: fast) and delete the temporary directory."""
        self.kill()
        self._reap()
        if self._own_dir:
            shutil.rmtree(self._paths.root, ignore_errors=True)

    def _signal(self, sig: int) -> None:
        pid = self.pid
        if pid is not None:
            os.kill(pid, sig)

    def _reap(self) -> None:
        self._proc = None
        handle = self._log_handle
        self._log_handle = None
        if handle is not None:
            handle.close()  # type: ignore[attr-defined]

    def __enter__(self) -> Slapd:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.pid is not None else "stopped"
        return f"<Slapd {self.uri} {state}>"

    # -- directory operations (through the ldap-utils commands) --------------------------------

    def whoami(self, dn: str = ADMIN_DN, password: str = ADMIN_PW, timeout: float = 10) -> str:
        """Bind as ``dn`` with ``ldapwhoami`` and return the authzId it reports."""
        out = _run(["ldapwhoami", "-x", "-o", f"nettimeout={timeout}", "-H", self.uri,
                    "-D", dn, "-w", password], timeout=timeout + 5)
        return out.strip()

    def set_password(self, dn: str, new_password: str) -> None:
        """Replace the ``userPassword`` of ``dn`` (as the root DN)."""
        self.modify(f"dn: {dn}\nchangetype: modify\nreplace: userPassword\nuserPassword: {new_password}\n")

    def modify(self, ldif: str) -> None:
        """Apply an LDIF change record with ``ldapmodify`` as the root DN."""
        _run(["ldapmodify", "-x", "-H", self.uri, "-D", ADMIN_DN, "-w", ADMIN_PW], stdin=ldif)

    def operation_count(self, operation: str = "Bind") -> int:
        """Return the monitor backend's count of ``operation`` (Bind, Search...) initiated so far."""
        out = _run(["ldapsearch", "-x", "-LLL", "-H", self.uri, "-D", ADMIN_DN, "-w", ADMIN_PW,
                    "-b", f"cn={operation},cn=Operations,cn=Monitor", "-s", "base",
                    "monitorOpInitiated"])
        for line in out.splitlines():
            if line.startswith("monitorOpInitiated:"):
                return int(line.split(":", 1)[1])
        raise SlapdError(f"no monitorOpInitiated for {operation}: {out}")

    def connection_count(self) -> int:
        """Return the number of client connections slapd has open (monitor backend, minus ours)."""
        out = _run(["ldapsearch", "-x", "-LLL", "-H", self.uri, "-D", ADMIN_DN, "-w", ADMIN_PW,
                    "-b", "cn=Current,cn=Connections,cn=Monitor", "-s", "base", "monitorCounter"])
        for line in out.splitlines():
            if line.startswith("monitorCounter:"):
                return int(line.split(":", 1)[1]) - 1
        raise SlapdError(f"no monitorCounter: {out}")

    def tls_sessions(self) -> int:
        """Count the TLS sessions begun so far, from the stats log (needs ``stats_log=True``):
        StartTLS requests on the plain port, plus connections accepted on the ``ldaps://`` port
        (a bare TCP connect there counts too: slapd cannot tell it from a handshake yet)."""
        if not self.stats_log:
            raise SlapdError("tls_sessions() reads the stats log: start the Slapd with stats_log=True")
        try:
            with open(self._paths.log, errors="replace") as f:
                text = f.read()
        except OSError:
            return 0
        return text.count(" STARTTLS\n") + text.count(f"(IP=127.0.0.1:{self.ldaps_port})")

    # -- set-up -----------------------------------------------------------------------------------

    def _tail_log(self) -> str:
        try:
            with open(self._paths.log, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return "(no log)"

    def _prepare(self) -> None:
        paths = self._paths
        os.makedirs(paths.db, exist_ok=True)
        self.port = free_port()
        self.ldaps_port = free_port() if self.tls else 0
        tls_conf = ""
        if self.tls:
            self.ca = TestCA(paths.root)
            cert, key = self.ca.issue("server", self.cert_hosts, days=self.cert_days)
            tls_conf = (
                f"TLSCACertificateFile {self.ca.cert_file}\n"
                f"TLSCertificateFile {cert}\nTLSCertificateKeyFile {key}\n"
                "TLSVerifyClient never\n"
            )
            if self.tls_cipher_suite:
                tls_conf += f"TLSCipherSuite {self.tls_cipher_suite}\n"
        hashed = {pw: self._hash(pw) for pw in (ADMIN_PW, SERVICE_PW, USER_PW)}
        includes = "".join(f"include /etc/ldap/schema/{s}.schema\n" for s in _SCHEMAS)
        idle = f"idletimeout {self.idle_timeout}\n" if self.idle_timeout else ""
        conf = (
            f"{includes}"
            "modulepath /usr/lib/ldap\nmoduleload back_mdb\nmoduleload back_monitor\n"
            f"pidfile {paths.root}/slapd.pid\nargsfile {paths.root}/slapd.args\n"
            f"loglevel {'stats' if self.stats_log else '0'}\nthreads {self.threads}\n"
            f"sizelimit unlimited\n{idle}{tls_conf}"
            "database mdb\nmaxsize 268435456\n"
            f'suffix "{SUFFIX}"\nrootdn "{ADMIN_DN}"\nrootpw {hashed[ADMIN_PW]}\n'
            f"directory {paths.db}\nindex objectClass eq\nindex uid,cn,mail eq\n"
            "access to attrs=userPassword\n  by self write\n  by anonymous auth\n  by * none\n"
            "access to *\n  by * read\n"
            "database monitor\n"
            f'access to *\n  by dn.exact="{ADMIN_DN}" read\n  by * none\n'
        )
        with open(paths.conf, "w") as f:
            f.write(conf)
        with open(paths.ldif, "w") as f:
            f.write(self._ldif(hashed[SERVICE_PW], hashed[USER_PW]))
        _run([_SLAPADD, "-q", "-f", paths.conf, "-l", paths.ldif])
        self._prepared = True

    @staticmethod
    def _hash(password: str) -> str:
        return _run(["slappasswd", "-s", password]).strip()

    def _ldif(self, service_hash: str, user_hash: str) -> str:
        parts = [
            f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n",
            f"dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n",
            f"dn: ou=services,{SUFFIX}\nobjectClass: organizationalUnit\nou: services\n",
        ]
        for n in range(1, 4):
            parts.append(
                f"dn: {service_dn(n)}\nobjectClass: account\nobjectClass: simpleSecurityObject\n"
                f"uid: svc{n}\nuserPassword: {service_hash}\n"
            )
        for n in range(self.users):
            parts.append(
                f"dn: {user_dn(n)}\nobjectClass: inetOrgPerson\nuid: user{n:04d}\ncn: User {n}\n"
                f"sn: {n}\ngivenName: User\nmail: user{n:04d}@example.com\nemployeeNumber: {n}\n"
                f"telephoneNumber: +1 555 {n:04d}\nuserPassword: {user_hash}\n"
            )
        return "\n".join(parts)


def _all_threads_stopped(pid: int) -> bool:
    """Whether every thread of process ``pid`` is in the stopped state (Linux /proc)."""
    tasks = f"/proc/{pid}/task"
    try:
        names = os.listdir(tasks)
    except FileNotFoundError:
        return True  # gone: nothing answers either
    for task in names:
        try:
            with open(f"{tasks}/{task}/stat") as stat:
                state = stat.read().rpartition(")")[2].split()[0]
        except (FileNotFoundError, IndexError):
            continue
        if state not in ("T", "t"):
            return False
    return True
