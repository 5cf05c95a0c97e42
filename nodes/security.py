"""Who may talk to a node: CURVE keys, a ZAP handler, the admin key and session keys.

Four protections, each independent of the others:

- **CURVE** (ZeroMQ's encryption and authentication, libsodium inside pyzmq).
  Every node has a key pair; its peer ROUTER, client ROUTER and PUB are CURVE
  servers with it, and its DEALERs to its peers are CURVE clients with it and
  the peer's public key as server key. Clients share one key pair (the file
  may list several public keys). Nothing is plaintext once ``curve = true``.
- **ZAP** (ZeroMQ RFC 27), answered by ``ZapHandler`` inside the node's own
  loop (no thread): a CURVE client is admitted only if its public key is listed
  for the socket's domain -- node keys on the peer ROUTER (``PEER_DOMAIN``),
  client keys on the client ROUTER and PUB (``CLIENT_DOMAIN``). The admitted
  connection carries a ``User-Id`` (the node id for a node key), and the peer
  transport drops a frame whose sender is not the node its key belongs to. So
  a process without a node key can neither join the cluster nor inject a Raft
  message, and one without a client key cannot submit, read or subscribe.
- **The admin key** (a random token in a 0600 file): admin requests without it
  are answered ``unauthorized`` and change nothing (``admin_key_ok``).
- **Session keys**: the game binds a player to the ``client_id`` that joined,
  and client ids are public (every update carries one). So a client id made by
  ``new_session`` is a hash of a secret session key (``s-`` + 32 hex digits),
  and a request with such an id must carry the key in its body
  (``session_key``): nobody can act under another client's id, nor poison its
  exactly-once session table. Other ids (chosen by hand) stay unbound.

Key files are Z85 text, one line, mode 0600 (a secret file readable by group or
others is refused, as ssh does). ``generate_keys`` writes them and returns the
``[security]`` table for the cluster file (format in ``nodes.clusterfile``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import stat
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.utils.z85

from .clusterfile import ClusterFile, ClusterFileError, Security

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
PEER_DOMAIN = "arena-peer"
CLIENT_DOMAIN = "arena-client"
CLIENT_USER = "client"

SESSION_KEY_FIELD = "session_key"
_BOUND_ID = re.compile(r"^s-[0-9a-f]{32}$")


class SecurityError(ClusterFileError):
    """Keys are missing, malformed or too readable; the message names the file and the fix.
    (A kind of cluster-file error: the file points at keys that do not work.)"""


@dataclass(frozen=True, slots=True)
class KeyPair:
    public: str  # Z85, 40 chars
    secret: str

    def as_bytes(self) -> tuple[bytes, bytes]:
        return self.public.encode(), self.secret.encode()


def require_curve() -> None:
    if not zmq.has("curve"):
        raise SecurityError("this pyzmq/libzmq has no CURVE support (zmq.has('curve') is "
                            "False); install a pyzmq wheel, which bundles libsodium")


def new_keypair() -> KeyPair:
    require_curve()
    public, secret = zmq.curve_keypair()
    return KeyPair(public.decode(), secret.decode())


def new_admin_key() -> str:
    """A random token (256 bits, Z85)."""
    return zmq.utils.z85.encode(secrets.token_bytes(32)).decode()


# --- key files ---------------------------------------------------------------------


def write_key_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, atomically (never briefly readable)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (text + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_key_file(path: Path, what: str) -> str:
    """A secret's text; refuses a missing, empty or group/other-readable file."""
    try:
        st = path.stat()
        text = path.read_text().strip()
    except OSError as e:
        raise SecurityError(f"cannot read the {what} file {path}: {e.strerror or e}") from e
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecurityError(f"the {what} file {path} is readable by others "
                            f"(mode {stat.S_IMODE(st.st_mode):o}); run: chmod 600 {path}")
    if not text:
        raise SecurityError(f"the {what} file {path} is empty")
    return text


def _secret_pair(path: Path, what: str, expected_public: str | None) -> KeyPair:
    secret = read_key_file(path, what)
    try:
        public = zmq.curve_public(secret.encode()).decode()
    except (zmq.ZMQError, ValueError) as e:
        raise SecurityError(f"the {what} file {path} does not hold a Z85 CURVE secret key") from e
    if expected_public is not None and not hmac.compare_digest(public, expected_public):
        raise SecurityError(f"the {what} file {path} does not match the public key in the "
                            "cluster file; regenerate with `arena keys --force`")
    return KeyPair(public, secret)


def node_keys(cluster: ClusterFile, node_id: str) -> KeyPair | None:
    """This node's key pair, or None when the cluster runs without CURVE."""
    sec = cluster.security
    if not sec.curve:
        return None
    require_curve()
    file = sec.server_secret_key_files.get(node_id)
    if file is None:
        raise SecurityError(f"[security] server_secret_key_files has no entry for {node_id}; "
                            "run `arena keys --cluster FILE`")
    return _secret_pair(cluster.resolve(file), f"secret key of {node_id}",
                        sec.server_public_keys.get(node_id))


def client_keys(cluster: ClusterFile) -> KeyPair | None:
    """The clients' key pair, or None when the cluster runs without CURVE."""
    sec = cluster.security
    if not sec.curve:
        return None
    require_curve()
    if not sec.client_secret_key_file:
        raise SecurityError("the cluster uses CURVE but [security] client_secret_key_file is "
                            "not set: a client needs the clients' secret key")
    pair = _secret_pair(cluster.resolve(sec.client_secret_key_file), "client secret key", None)
    if pair.public not in sec.client_public_keys:
        raise SecurityError(f"the client secret key {sec.client_secret_key_file} matches none "
                            "of [security] client_public_keys")
    return pair


def check_admin_key(cluster: ClusterFile) -> None:
    """A node must know the admin key the file names, or it would run with none."""
    file = cluster.security.admin_key_file
    if file:
        read_key_file(cluster.resolve(file), "admin key")


def generate_keys(directory: Path, node_ids: list[str], relative_to: Path | None = None,
                  force: bool = False) -> Security:
    """Key pairs for every node and for clients, and an admin key, in ``directory``.

    Paths in the returned table are relative to ``relative_to`` when the keys lie
    under it (the cluster file's folder), else absolute."""
    require_curve()
    directory = directory.resolve()
    names = [*(f"{n}.secret" for n in node_ids), "client.secret", "admin.key"]
    existing = [n for n in names if (directory / n).exists()]
    if existing and not force:
        raise SecurityError(f"keys already exist in {directory} ({', '.join(existing)}); pass "
                            "--force to replace them (every node and client then needs the "
                            "new files)")
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)

    def shown(p: Path) -> str:
        if relative_to is not None:
            try:
                return str(p.relative_to(relative_to.resolve()))
            except ValueError:
                pass
        return str(p)

    publics, secret_files = {}, {}
    for nid in node_ids:
        pair = new_keypair()
        write_key_file(directory / f"{nid}.public", pair.public)
        write_key_file(directory / f"{nid}.secret", pair.secret)
        publics[nid], secret_files[nid] = pair.public, shown(directory / f"{nid}.secret")
    client = new_keypair()
    write_key_file(directory / "client.public", client.public)
    write_key_file(directory / "client.secret", client.secret)
    write_key_file(directory / "admin.key", new_admin_key())
    return Security(
        curve=True, server_public_keys=publics, server_secret_key_files=secret_files,
        client_public_keys=(client.public,),
        client_secret_key_file=shown(directory / "client.secret"),
        admin_key_file=shown(directory / "admin.key"),
    )


# --- sockets -----------------------------------------------------------------------


def make_server(sock: zmq.Socket, keys: KeyPair, domain: str) -> None:
    """Before bind: a CURVE server whose clients the ZAP handler vets in ``domain``.
    ``ZAP_ENFORCE_DOMAIN``: without a ZAP handler every handshake fails (never admits)."""
    public, secret = keys.as_bytes()
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
    sock.setsockopt(zmq.ZAP_DOMAIN, domain.encode())
    sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)


def make_client(sock: zmq.Socket, keys: KeyPair, server_public: str) -> None:
    """Before connect: a CURVE client of the server whose public key is given
    (libzmq copies the options at connect, so set them again before each connect)."""
    public, secret = keys.as_bytes()
    sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
    sock.setsockopt(zmq.CURVE_SERVERKEY, server_public.encode())


class ZapHandler:
    """ZAP (RFC 27) in the node's loop: poll ``socket``, call ``handle()``.

    ``allowed[domain][public key] = user id``. Only CURVE is accepted; every
    verdict is counted (``admitted`` / ``denied``, by domain)."""

    def __init__(self, ctx: zmq.Context, allowed: dict[str, dict[str, str]]) -> None:
        self.allowed = {d: dict(keys) for d, keys in allowed.items()}
        self.admitted: Counter[str] = Counter()
        self.denied: Counter[str] = Counter()
        self.socket = ctx.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind(ZAP_ENDPOINT)

    def allow(self, domain: str, public_key: str, user_id: str) -> None:
        self.allowed.setdefault(domain, {})[public_key] = user_id

    def handle(self, limit: int = 1000) -> None:
        for _ in range(limit):
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                cut = frames.index(b"")
            except ValueError:
                continue  # not a ZAP request: nothing to answer
            envelope, body = frames[: cut + 1], frames[cut + 1 :]
            if len(body) < 6:
                continue
            version, request_id, domain_b, _address, _identity, mechanism, *credentials = body
            domain = domain_b.decode(errors="replace")
            user = None
            if version == b"1.0" and mechanism == b"CURVE" and len(credentials) == 1 \
                    and len(credentials[0]) == 32:
                key = zmq.utils.z85.encode(credentials[0]).decode()
                user = self.allowed.get(domain, {}).get(key)
            if user is None:
                self.denied[domain] += 1
                reply = [b"1.0", request_id, b"400", b"key not admitted", b"", b""]
            else:
                self.admitted[domain] += 1
                reply = [b"1.0", request_id, b"200", b"OK", user.encode(), b""]
            self.socket.send_multipart(envelope + reply)

    def close(self) -> None:
        self.socket.close(0)


def zap_for(ctx: zmq.Context, cluster: ClusterFile) -> ZapHandler:
    """The handler admitting the cluster file's node keys as peers and client keys as clients."""
    sec = cluster.security
    return ZapHandler(ctx, {
        PEER_DOMAIN: {key: nid for nid, key in sec.server_public_keys.items()},
        CLIENT_DOMAIN: {key: CLIENT_USER for key in sec.client_public_keys},
    })


# --- admin and session keys ------------------------------------------------------------


def admin_key_ok(expected: str | None, given: object) -> bool:
    """No key configured: admin is open (plaintext loopback clusters, as before)."""
    if not expected:
        return True
    return isinstance(given, str) and hmac.compare_digest(given.encode(), expected.encode())


def session_client_id(session_key: str) -> str:
    digest = hashlib.sha256(b"arena-session\0" + session_key.encode()).hexdigest()
    return f"s-{digest[:32]}"


def new_session() -> tuple[str, str]:
    """(client_id, session_key): the id is public, the key stays with the client."""
    key = secrets.token_urlsafe(24)
    return session_client_id(key), key


def is_bound(client_id: str) -> bool:
    return _BOUND_ID.match(client_id) is not None


def session_ok(client_id: str, session_key: object) -> bool:
    """A bound id needs its key; any other id is accepted as it is (unbound)."""
    if not is_bound(client_id):
        return True
    return isinstance(session_key, str) and hmac.compare_digest(
        session_client_id(session_key), client_id)
