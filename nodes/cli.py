"""The ``arena`` command line. Entry points only wire; logic lives in the packages.

The cluster file is found with --cluster, else $ARENA_CLUSTER, else
./.arena/cluster.toml (where ``arena up`` writes it). ``--cluster`` and
``--json`` may come before the command too (``arena --cluster FILE game``): the
group passes them down through the click context, and the command's own option,
when given on the command line, wins.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from . import clusterfile


def _from_group(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """A command's ``--cluster`` / ``--json``: its own, if given on its command
    line; else the group's (``arena --cluster FILE game``), if given on the
    command line; else the environment or the default."""
    assert param.name is not None
    if ctx.get_parameter_source(param.name) is ParameterSource.COMMANDLINE:
        return value
    root = ctx.find_root()
    if root is not ctx and root.get_parameter_source(param.name) is ParameterSource.COMMANDLINE:
        return root.params.get(param.name, value)
    return value


CLUSTER_HELP = "Cluster file (default: $ARENA_CLUSTER, else .arena/cluster.toml)."
cluster_option = click.option(
    "--cluster", "cluster_path", envvar="ARENA_CLUSTER", default=None, help=CLUSTER_HELP,
    callback=_from_group,
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.",
                           callback=_from_group)
admin_key_option = click.option("--admin-key", envvar="ARENA_ADMIN_KEY", default=None,
                                help="Admin key, if the cluster requires one.")


def _cluster(path: str | None) -> clusterfile.ClusterFile:
    try:
        return clusterfile.load(clusterfile.find(path))
    except clusterfile.ClusterFileError as e:
        raise click.ClickException(str(e)) from e


def _client(path: str | None, admin_key: str | None = None, deadline: float = 5.0):  # noqa: ANN202
    from client.api import Client

    cf = _cluster(path)
    try:
        return Client(cf, admin_key=admin_key or cf.admin_key, deadline=deadline)
    except clusterfile.ClusterFileError as e:  # e.g. no readable client key on a CURVE cluster
        raise click.ClickException(str(e)) from e


def _emit(data: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        click.echo(data if isinstance(data, str) else json.dumps(data, default=str))


def _fail(e: Exception) -> click.ClickException:
    return click.ClickException(str(e))


def _read_failed(e: Exception, timeout: float) -> click.ClickException:
    """A read that got no answer: unlike a command, it changed nothing either way."""
    from client.api import TimeoutError_, Unavailable

    if isinstance(e, TimeoutError_ | Unavailable):
        return click.ClickException(
            f"no node answered the read within {timeout:g} s, and the read changed nothing "
            "(a read never does). Is a majority of the nodes up? Check 'arena status', then "
            "retry (or pass a longer --timeout)")
    return _fail(e)


read_timeout_option = click.option(
    "--timeout", "timeout", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
    help="Seconds to wait for an answer.")


class _Main(click.Group):
    """A bad or unreadable cluster file (or key file) is a clear error, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except clusterfile.ClusterFileError as e:
            raise click.ClickException(str(e)) from e


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option("0.1.0", prog_name="arena")
@click.option("--cluster", "cluster_path", envvar="ARENA_CLUSTER", default=None,
              help=CLUSTER_HELP + " Also accepted after the command, where it wins.")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON, for the commands that print data.")
def main(cluster_path: str | None, as_json: bool) -> None:
    """Arena: a multiplayer game backend whose state is replicated with Raft."""


# --- nodes --------------------------------------------------------------------------


@main.command()
@click.option("--id", "node_id", required=True, help="This node's id in the cluster file.")
@cluster_option
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Data directory (default: from the cluster file, else <file dir>/<id>).")
@click.option("--no-fsync", is_flag=True, help="Do not fsync (unsafe; for experiments only).")
@click.option("--rate-limit", type=float, default=0.0, show_default=True,
              help="Requests per second per client (0 = unlimited).")
@click.option("--log-level", default="INFO", show_default=True)
@click.option("--join", is_flag=True,
              help="A new server joining a running cluster: it starts with no configuration "
                   "and waits for the leader (add it with the admin action add_node).")
def node(node_id: str, cluster_path: str | None, data_dir: Path | None, no_fsync: bool,
         rate_limit: float, log_level: str, join: bool) -> None:
    """Run one node process (foreground; SIGTERM stops it cleanly)."""
    from .node_main import run_node

    cf = _cluster(cluster_path)
    try:
        run_node(cf, node_id, data_dir, fsync=not no_fsync, rate_limit=rate_limit,
                 log_level=log_level, join=join)
    except Exception as e:
        from .storage.errors import StorageError

        if isinstance(e, StorageError | clusterfile.ClusterFileError):
            raise click.ClickException(str(e)) from e
        raise


@main.command()
@click.option("--nodes", "count", type=click.IntRange(1, 15), default=3, show_default=True)
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=Path(".arena"),
              show_default=True, help="Where the cluster file, data and logs go.")
@click.option("--players", type=click.IntRange(0, 8), default=0, show_default=True,
              help="Player windows to open.")
@click.option("--bots", type=click.IntRange(0, 32), default=0, show_default=True,
              help="Headless bots to start.")
@click.option("--keep", is_flag=True, help="Reuse the data of a previous run in --dir.")
@click.option("--rooms", "room_count", type=click.IntRange(0, 2000), default=0, show_default=True,
              help="Public rooms to open at once (Room 1 .. Room N), for quick play to fill.")
@click.option("--election-ms", nargs=2, type=float, default=(150.0, 300.0), show_default=True)
@click.option("--no-status", is_flag=True, help="Do not draw the live status table.")
@click.option("--secure", is_flag=True,
              help="CURVE keys and an admin key in DIR/keys, and a rate limit of 200 "
                   "requests/s per client id and per connection (see 'arena keys').")
def up(count: int, directory: Path, players: int, bots: int, keep: bool, room_count: int,
       election_ms: tuple[float, float], no_status: bool, secure: bool) -> None:
    """Launch a local cluster of node processes (and players and bots); Ctrl-C stops all.

    With players or bots, one room is opened for all of them (Player1 seated as its host)."""
    from .launcher import launch

    if secure:
        from .local import prepare_secure

        prepare_secure(directory.resolve(), count, clusterfile.Timing(election_ms=election_ms),
                       keep)
        keep = True  # launch the cluster file prepare_secure wrote

    launch(directory, count, players=players, bots=bots, keep=keep,
           election_ms=election_ms, live_status=not no_status, rooms=room_count)


@main.command()
@cluster_option
@json_option
def status(cluster_path: str | None, as_json: bool) -> None:
    """Per node: id, address, role, term, leader, commit, applied, reachable."""
    from .launcher import cluster_status, render_status

    cf = _cluster(cluster_path)
    rows = cluster_status(cf)
    if as_json:
        _emit(rows, True)
    else:
        render_status(rows)


def _local(cluster_path: str | None):  # noqa: ANN202
    from .local import LocalCluster

    path = clusterfile.find(cluster_path)
    if not path.exists():
        raise click.ClickException(f"no cluster file at {path}; start one with 'arena up'")
    return LocalCluster.attach(path)


def _require_admin(cf: clusterfile.ClusterFile, admin_key: str | None) -> None:
    """On a cluster with an admin key, process control needs it too (no key: as before)."""
    from .security import admin_key_ok

    if not (cf.admin_key or cf.security.admin_key_file):
        return
    key = admin_key or cf.admin_key
    if not key:
        raise click.ClickException("unauthorized: this cluster has an admin key; pass "
                                   "--admin-key or set ARENA_ADMIN_KEY")
    if cf.admin_key:  # this user can read the key: compare here
        if not admin_key_ok(cf.admin_key, key):
            raise click.ClickException("unauthorized: wrong admin key")
        return
    from client.api import Client, Rejected

    try:
        c = Client(cf, admin_key=key, deadline=1.0)
    except clusterfile.ClusterFileError as e:  # e.g. no readable client key either
        raise click.ClickException(f"cannot check the admin key: {e}") from e
    with c:  # ask the cluster to check it
        for nid in cf.ids():
            try:
                c.admin("ping", {}, node=nid)
                return
            except Rejected as e:
                if e.code == "unauthorized":
                    raise click.ClickException("unauthorized: wrong admin key") from e
            except Exception:  # an unreachable node: ask the next one
                continue
    raise click.ClickException("cannot check the admin key: no node answers and the key "
                               "file is not readable here")


LOCAL_PROCESS_NOTE = (
    "This acts on the node's process on this machine (its pid is in procs.json): the "
    "operating system decides who may signal it, not the admin key. When the cluster "
    "file names an admin key, arena asks for it first, a guard against slips; with a "
    "copy of the file without it, or with plain kill, no key is needed. The admin key "
    "protects the admin frames sent to nodes (partition, heal, transfer, add_node, "
    "remove_node); see docs/SECURITY.md.")


def _process_command(name: str, doc: str) -> None:
    @main.command(name=name, help=f"{doc}\n\n{LOCAL_PROCESS_NOTE}")
    @click.argument("node_id")
    @cluster_option
    @admin_key_option
    def _cmd(node_id: str, cluster_path: str | None, admin_key: str | None) -> None:
        lc = _local(cluster_path)
        lc.cluster.node(node_id)
        _require_admin(lc.cluster, admin_key)
        try:
            if name == "restart":
                pid = lc.restart(node_id)
                click.echo(f"{node_id} restarted (pid {pid})")
                return
            getattr(lc, name)(node_id)
        except (RuntimeError, clusterfile.ClusterFileError) as e:
            raise _fail(e) from e
        click.echo(f"{node_id}: {name} done (pid {lc.pid(node_id)})")


_process_command("kill", "SIGKILL a node: it dies at once, keeping only what it fsynced.")
_process_command("stop", "SIGTERM a node: it stops cleanly.")
_process_command("restart", "Start a node again with the same data directory.")
_process_command("pause", "SIGSTOP a node (it freezes; its peers see it as silent).")
_process_command("resume", "SIGCONT a paused node.")


@main.command()
@click.argument("node_ids", nargs=-1, required=True)
@cluster_option
@admin_key_option
def partition(node_ids: tuple[str, ...], cluster_path: str | None, admin_key: str | None) -> None:
    """Cut NODE_IDS off from the rest of the cluster (nodes drop that traffic)."""
    _admin_everywhere(cluster_path, admin_key, "partition", {"nodes": list(node_ids)})
    click.echo(f"partitioned {', '.join(node_ids)} from the rest")


def _admin_everywhere(cluster_path: str | None, admin_key: str | None, action: str,
                      args: dict) -> None:
    """Send an admin action to every node; fail (exit 1) if no node took it."""
    done = 0
    with _client(cluster_path, admin_key, deadline=2.0) as c:
        for nid in c.cluster.ids():
            try:
                c.admin(action, args, node=nid)
                done += 1
            except Exception as e:
                click.echo(f"{nid}: {e}", err=True)
    if not done:
        raise click.ClickException(f"no node accepted '{action}'")


@main.command()
@cluster_option
@admin_key_option
def heal(cluster_path: str | None, admin_key: str | None) -> None:
    """Undo every partition."""
    _admin_everywhere(cluster_path, admin_key, "heal", {})
    click.echo("healed")


@main.command()
@click.argument("node_id")
@cluster_option
@admin_key_option
def transfer(node_id: str, cluster_path: str | None, admin_key: str | None) -> None:
    """Hand leadership to NODE_ID (thesis 3.10)."""
    with _client(cluster_path, admin_key) as c:
        try:
            c.admin("transfer", {"to": node_id})
        except Exception as e:
            raise _fail(e) from e
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            s = c.status(node_id, timeout=0.5)
            if s and s.get("role") == "leader":
                click.echo(f"{node_id} leads term {s['term']}")
                return
            time.sleep(0.05)
    raise click.ClickException(f"{node_id} did not take over within 3 s")


@main.command()
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=None,
              help="Where the key files go (default: <cluster file's folder>/keys; "
                   "./keys with --nodes).")
@click.option("--nodes", "count", type=click.IntRange(1, 64), default=None,
              help="Keys for nodes n1..nN without a cluster file: prints the [security] "
                   "table (also written to DIR/security.toml).")
@cluster_option
@click.option("--force", is_flag=True, help="Replace existing keys.")
def keys(directory: Path | None, count: int | None, cluster_path: str | None,
         force: bool) -> None:
    """Generate CURVE key pairs (every node, clients) and an admin key; with a cluster
    file, record them in its [security] table. Restart the nodes to use them."""
    from .clusterfile import ClusterFile
    from .local import add_keys
    from .security import generate_keys

    try:
        if count is not None:
            if cluster_path:
                raise click.UsageError("give either --nodes or --cluster, not both")
            target = (directory or Path("keys")).resolve()
            sec = generate_keys(target, [f"n{i + 1}" for i in range(count)], force=force)
            text = "\n".join(sec.to_toml()) + "\n"
            (target / "security.toml").write_text(text)
            click.echo(text, nl=False)
            click.echo(f"# keys in {target}; paste the table above into the cluster file",
                       err=True)
            click.echo(f"# with curve = true, [options] rate_limit defaults to "
                       f"{clusterfile.SECURE_RATE_LIMIT:g} requests/s per client id and per "
                       "connection (rate_limit = 0 turns it off)", err=True)
            return
        path = clusterfile.find(cluster_path)
        cf: ClusterFile = add_keys(path, directory, force=force)
    except clusterfile.ClusterFileError as e:
        raise click.ClickException(str(e)) from e
    sec = cf.security
    click.echo(f"CURVE keys for {', '.join(cf.ids())} and clients, admin key in "
               f"{cf.resolve(sec.admin_key_file or '')}; recorded in {path}")
    click.echo(f"rate limit: {cf.rate_limit:g} requests/s per client id and per connection "
               f"(burst {cf.rate_burst}); change [options] rate_limit there (0 turns it off)")
    click.echo("restart every node to turn encryption on; clients need the client secret "
               "key file, admins the admin key file")


@main.group()
def kv() -> None:
    """Key-value operations (linearizable unless --stale)."""


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


@kv.command("get")
@click.argument("key")
@click.option("--stale", is_flag=True, help="Fast local read from any node, possibly stale.")
@cluster_option
@json_option
@read_timeout_option
def kv_get(key: str, stale: bool, cluster_path: str | None, as_json: bool,
           timeout: float) -> None:
    """Read KEY."""
    with _client(cluster_path, deadline=timeout) as c:
        try:
            r = c.get_full(key, stale=stale)
        except Exception as e:
            raise _read_failed(e, timeout) from e
    if as_json:
        _emit(r, True)
    elif not r.get("found"):
        raise click.ClickException(f"key {key!r} not found")
    else:
        click.echo(json.dumps(r.get("value")))


OPTIONAL_ARGS = {"by": "1", "ttl_ms": "10000"}  # positional, but with a default


def _kv_command(name: str, args: list[str], doc: str) -> None:
    params = [click.Argument([a], required=a not in OPTIONAL_ARGS, default=OPTIONAL_ARGS.get(a))
              for a in args]

    def run(cluster_path: str | None, as_json: bool, **kw: str) -> None:
        cmd: dict[str, Any] = {"op": {"del": "delete"}.get(name, name)}
        for a in args:
            v = kw[a]
            cmd[a] = _value(v) if a in ("value", "expected", "by", "ttl_ms") else v
        with _client(cluster_path) as c:
            try:
                r = c.kv(cmd)
            except Exception as e:
                raise _fail(e) from e
        _emit(r, as_json)
        if not r.get("ok"):
            sys.exit(1)

    cmd = click.Command(name, callback=run, help=doc, params=[
        *params,
        click.Option(["--cluster", "cluster_path"], envvar="ARENA_CLUSTER", default=None,
                     help=CLUSTER_HELP, callback=_from_group),
        click.Option(["--json", "as_json"], is_flag=True, help="Print JSON.",
                     callback=_from_group),
    ])
    kv.add_command(cmd)


_kv_command("put", ["key", "value"], "Set KEY to VALUE (JSON if it parses, else a string).")
_kv_command("del", ["key"], "Delete KEY.")
_kv_command("cas", ["key", "expected", "value"],
            "Set KEY to VALUE only if it holds EXPECTED (null = absent).")
_kv_command("incr", ["key", "by"], "Add BY (default 1) to the counter KEY.")
_kv_command("decr", ["key", "by"], "Subtract BY (default 1) from the counter KEY.")
_kv_command("lock", ["name", "holder", "ttl_ms"],
            "Acquire (or renew) lock NAME for HOLDER for TTL_MS (default 10000) ms.")
_kv_command("unlock", ["name", "holder"], "Release lock NAME held by HOLDER.")


@main.command()
@cluster_option
@json_option
@read_timeout_option
@click.option("--room", default=None, metavar="ROOM",
              help="Print room ROOM's table (an id such as r3, from 'arena rooms') instead of "
                   "the single table.")
def game(cluster_path: str | None, as_json: bool, timeout: float, room: str | None) -> None:
    """Print the current game state (a linearizable read): the single table, or a room's."""
    from game.render_text import describe

    with _client(cluster_path, deadline=timeout) as c:
        try:
            if room is None:
                r = c.read("game", {"op": "state"})
            else:
                r = c.read("rooms", {"op": "room", "room": room})
        except Exception as e:
            raise _read_failed(e, timeout) from e
    if room is not None:
        if not r.get("ok"):
            raise click.ClickException(r.get("message") or str(r))
        r = {"state": r["room"]["table"]}
    state = r.get("state") if isinstance(r, dict) else None
    if as_json:
        _emit(state, True)
    else:
        click.echo(describe(state or {}))


ROOM_ACTIONS = ("list", "create", "close", "show")


@main.command()
@click.argument("action", type=click.Choice(ROOM_ACTIONS), default="list")
@click.argument("target", required=False, metavar="[NAME|ROOM]")
@cluster_option
@json_option
@read_timeout_option
@admin_key_option
@click.option("--private", is_flag=True, help="create: a private room (joined with its code).")
@click.option("--no-bots", is_flag=True, help="create: bots may not join.")
@click.option("--max-players", type=click.IntRange(1, 16), default=None,
              help="create: seats (1-16; default 8).")
@click.option("--rounds", type=click.IntRange(1, 20), default=None,
              help="create: rounds per game (1-20; default 3).")
@click.option("--round-ms", type=click.IntRange(1000, 600_000), default=None,
              help="create: round length in ms (1000-600000; default 20000).")
def rooms(action: str, target: str | None, cluster_path: str | None, as_json: bool,
          timeout: float, admin_key: str | None, private: bool, no_bots: bool,
          max_players: int | None, rounds: int | None, round_ms: int | None) -> None:
    """The rooms: list (the default), create NAME, close ROOM (admin), show ROOM.

    list: public rooms with phase, players, created and leading node (private rooms
    are not listed). create NAME: a room with the options given; prints its id (and
    its join code when --private). close ROOM: closes it now and frees its seats;
    an admin action (needs the admin key when the cluster has one). show ROOM: the
    room's row, members, away seats and scores."""
    if action in ("create", "close", "show") and not target:
        what = "NAME" if action == "create" else "ROOM"
        raise click.UsageError(f"'arena rooms {action}' needs {what}")
    with _client(cluster_path, admin_key=admin_key, deadline=timeout) as c:
        if action == "list":
            try:
                r = c.read("rooms", {"op": "rooms"})
            except Exception as e:
                raise _read_failed(e, timeout) from e
            _print_rooms(r["rooms"], as_json)
        elif action == "show":
            try:
                r = c.read("rooms", {"op": "room", "room": target})
            except Exception as e:
                raise _read_failed(e, timeout) from e
            if not r.get("ok"):
                raise click.ClickException(r.get("message") or str(r))
            _print_room(r["room"], as_json)
        elif action == "create":
            cmd: dict[str, Any] = {"type": "create", "name": target, "private": private,
                                   "bots": not no_bots}
            for key, value in (("max_players", max_players), ("rounds", rounds),
                               ("round_ms", round_ms)):
                if value is not None:
                    cmd[key] = value
            r = _rooms_command(c, cmd, timeout)
            _emit(r if as_json else f"created room {r['room']}"
                  + (f" (private, join code {r['code']})" if r.get("code") else ""), as_json)
        else:
            _require_admin(c.cluster, admin_key)
            try:
                r = c.admin("propose", {"machine": "rooms", "cmd": {"type": "close", "room": target}})
            except Exception as e:
                raise _fail(e) from e
            if not r.get("ok"):
                raise click.ClickException(r.get("message") or str(r))
            _emit(r if as_json else f"closed room {r['room']}", as_json)


def _rooms_command(c: Any, cmd: dict, timeout: float) -> dict:
    """Submit a rooms command, waiting out a cluster that is still committing its secret."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            r = c.submit("rooms", cmd)
        except Exception as e:
            raise _fail(e) from e
        if r.get("error") == "rooms_starting" and time.monotonic() < deadline:
            time.sleep(0.05)
            continue
        if not r.get("ok"):
            raise click.ClickException(f"{r.get('error')}: {r.get('message')}")
        return r


def _print_rooms(rows: list[dict], as_json: bool) -> None:
    if as_json:
        _emit(rows, True)
        return
    if not rows:
        click.echo("no open public rooms (create one with 'arena rooms create NAME')")
        return
    click.echo(f"{'ROOM':<7} {'NAME':<32} {'PHASE':<12} {'PLAYERS':>7}  {'BOTS':<4} "
               f"{'CREATED':<8} LEADER")
    for r in rows:
        created = time.strftime("%H:%M:%S", time.localtime(r["created_ms"] / 1000))
        click.echo(f"{r['room']:<7} {r['name']:<32} {r['phase']:<12} "
                   f"{r['players']:>3}/{r['max_players']:<3}  {'yes' if r['bots'] else 'no':<4} "
                   f"{created:<8} {r['leader'] or '-'}")


def _print_room(room: dict, as_json: bool) -> None:
    from game.render_text import describe

    if as_json:
        _emit(room, True)
        return
    row = room["row"]
    click.echo(f"{row['room']} {row['name']!r}: {row['players']}/{row['max_players']} players, "
               f"{'private' if row['private'] else 'public'}, bots "
               f"{'allowed' if row['bots'] else 'not allowed'}, led by {row['leader'] or '-'}")
    click.echo(describe(room["table"]))
    if room["away"]:
        click.echo("away: " + ", ".join(sorted(room["away"])))


@main.command()
@click.option("--name", required=True, help="Your player name.")
@cluster_option
@click.option("--room", default=None, envvar="ARENA_ROOM", metavar="ROOM",
              help="Join this room (its id, see 'arena rooms list'; default: $ARENA_ROOM) "
                   "instead of opening on the room browser.")
@click.option("--offline", is_flag=True,
              help="Play one local table against simulated opponents, no cluster (no rooms).")
@click.option("--fps", type=int, default=60, show_default=True)
@click.option("--size", default="1200x800", show_default=True, help="Window size, WxH.")
def play(name: str, cluster_path: str | None, room: str | None, offline: bool, fps: int,
         size: str) -> None:
    """Open a player window on the room browser (or in ROOM). Your seat's token is kept
    beside the cluster file (seats/), so reopening the window within the grace period
    (30 s by default) gets your seat and points back."""
    import os

    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")  # the game makes no sound
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    try:
        w, h = (int(x) for x in size.lower().split("x"))
    except ValueError as e:
        raise click.BadParameter(f"{size!r}: expected WIDTHxHEIGHT, e.g. 1200x800") from e
    from client.app import run

    if offline:
        from client.fake import FakeSession

        session = FakeSession.with_opponents(name)
    else:
        from client.roomsession import RoomSession

        cf = _cluster(cluster_path)
        path = str(clusterfile.find(cluster_path))
        session = RoomSession.connect(cf, name, cluster_path=path, room=room)
    sys.exit(run(session, name, fps=fps, size=(w, h)))


@main.command()
@click.option("--count", type=click.IntRange(1, 4000), default=2, show_default=True,
              help="Bots (64 at most without --rooms).")
@click.option("--rooms", "room_count", type=click.IntRange(0, 2000), default=None,
              help="Spread the bots over this many new rooms (0: each quick-plays), all in "
                   "this process, at human pace by default; a live line of rooms, seats, games, "
                   "hits/s, hit->broadcast latency and failovers.")
@click.option("--strategy", type=click.Choice(["eager", "slow", "random", "human", "mixed"]),
              default="mixed", show_default=True,
              help="With --rooms, 'mixed' means human (think 0.5-1 s, then hit).")
@click.option("--name", "prefix", default="bot", show_default=True, help="Name prefix.")
@click.option("--games", type=int, default=0, show_default=True,
              help="Stop after this many games (0 = run until Ctrl-C).")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option("--seed", type=int, default=None, help="Seed of the bots' choices.")
@cluster_option
def bots(count: int, room_count: int | None, strategy: str, prefix: str, games: int,
         duration: float | None, seed: int | None, cluster_path: str | None) -> None:
    """Run headless agent players (eager, slow, random, human); a live line shows their
    games and points. With --rooms, many bots in one process over many rooms."""
    import random as _random

    if room_count is not None:
        from client.botfarm import run_farm

        seed = seed if seed is not None else _random.SystemRandom().randrange(1 << 30)
        click.echo(f"bots seed={seed}")
        try:
            farm = run_farm(_cluster(cluster_path), count, room_count, seed,
                            "human" if strategy == "mixed" else strategy, prefix, games, duration)
        except ValueError as e:
            raise click.ClickException(str(e)) from e
        click.echo(farm.summary_line())
        return
    if count > 64:
        raise click.ClickException(f"--count {count}: 64 bots at most without --rooms "
                                   "(with --rooms they share one process and its sockets)")

    from client.bots import STRATEGIES, Bot, ProgressPrinter, run_bots
    from client.session import NetworkSession

    cf = _cluster(cluster_path)
    seed = seed if seed is not None else _random.SystemRandom().randrange(1 << 30)
    click.echo(f"bots seed={seed}")
    sessions, players = [], []
    for i in range(count):
        name = prefix if count == 1 else f"{prefix}{i + 1}"
        strat = STRATEGIES[i % 3] if strategy == "mixed" else strategy
        s = NetworkSession(cf)
        sessions.append(s)
        players.append(Bot(name, s, strat, _random.Random(f"{seed}:{name}"), games_to_play=games))
    progress = ProgressPrinter()
    try:
        run_bots(players, sessions, duration, report=progress)
    finally:
        progress.close()
        for s in sessions:
            s.close()
    for b in players:
        click.echo(f"{b.name} ({b.strategy}): {b.hits_won}/{b.hits_sent} hits won, "
                   f"{b.games_seen} games")


@main.command()
@click.option("--duration", type=float, default=30.0, show_default=True, help="Seconds of faults.")
@click.option("--clients", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option("--nodes", type=click.IntRange(3, 9), default=3, show_default=True)
@click.option("--nemesis", default="kill,pause,partition,restart", show_default=True,
              help="Comma-separated faults: kill, pause, partition, restart.")
@click.option("--seed", type=int, default=None, help="Seed of every random choice.")
@json_option
def chaos(duration: float, clients: int, nodes: int, nemesis: str, seed: int | None,
          as_json: bool) -> None:
    """Jepsen-style run on real processes; checks linearizability and that no
    acknowledged write is lost. Exits 1 on any anomaly."""
    from .chaos import run_chaos

    kinds = tuple(k.strip() for k in nemesis.split(",") if k.strip())
    try:
        r = run_chaos(duration, clients, nodes, kinds, seed, progress=not as_json)
    except ValueError as e:
        raise click.ClickException(str(e)) from e
    if as_json:
        _emit(r.to_dict(), True)
    else:
        click.echo(f"seed={r.seed} nodes={r.nodes} clients={r.clients} duration={r.duration_s:g}s")
        click.echo(f"operations: {r.operations} ({r.ok} ok, {r.failed} failed, "
                   f"{r.unknown} unknown); acknowledged writes: {r.acknowledged_writes}")
        click.echo(f"faults injected: {len(r.faults)}")
        click.echo(f"linearizable: {'yes' if r.linearizable else 'NO'}; "
                   f"missing acknowledged writes: {len(r.missing_writes)}")
        click.echo(f"anomalies: {r.anomalies}")
        if r.anomalies:
            click.echo(r.lincheck_explanation)
            click.echo(f"reproduce with: arena chaos --seed {r.seed} --duration {duration:g}")
    sys.exit(1 if r.anomalies else 0)


@main.command()
@click.argument("suite", required=False, type=click.Choice(["flood", "groups", "rooms"]))
@click.option("--vs", "versus", default=None, metavar="pysyncobj|etcd|pysyncobj,etcd",
              help="Also run the same workloads, in the same run, on a 3-process PySyncObj "
                   "cluster and/or an etcd 3.5 cluster of --nodes members (durable; grpcio "
                   "client; each workload on Arena, then at once on etcd).")
@click.option("--nodes", type=click.IntRange(3, 7), default=3, show_default=True)
@click.option("--workloads", default="throughput,latency,failover,broadcast,memory,catchup",
              show_default=True, help="Comma-separated subset.")
@click.option("--commits", type=int, default=40_000, show_default=True,
              help="Commits for the throughput run.")
@click.option("--clients", type=int, default=8, show_default=True)
@click.option("--failover-trials", type=int, default=20, show_default=True)
@click.option("--memory-commits", type=int, default=1_000_000, show_default=True,
              help="Commits before measuring RSS (snapshots on).")
@click.option("--quick", is_flag=True, help="Small sizes (a smoke run, not a measurement).")
@click.option("--durable", is_flag=True,
              help="'groups' only: every node host keeps its groups in a shared write-ahead "
                   "log on disk (one fsync per loop turn) instead of in memory.")
@json_option
def bench(suite: str | None, versus: str | None, nodes: int, workloads: str, commits: int,
          clients: int, failover_trials: int, memory_commits: int, quick: bool,
          durable: bool, as_json: bool) -> None:
    """Benchmarks on real processes over loopback (durable on our side), with ratios
    against PySyncObj and/or etcd measured in the same run.

    'arena bench flood': a victim client's latency and the elections while one client
    floods the leader, per kind of flood (5 s each, 2 s with --quick; more options:
    python -m nodes.bench flood --help).

    'arena bench groups': 1,000 Raft groups on 3 node host processes: idle CPU per
    node, failover of every group a killed node led, write throughput with leaders
    spread against all on one node (60 groups with --quick; more options:
    python -m nodes.bench groups --help).

    'arena bench rooms': 200 active rooms of 4 bots, a kill -9 of the leader mid-game
    (recovery, points lost), 2,000 idle rooms (CPU, memory); --quick for a smoke run
    (more options: python -m nodes.bench rooms --help)."""
    if suite == "groups":
        from .bench import groups

        sys.exit(groups.main_report(quick=quick, as_json=as_json, durable=durable))
    if suite == "rooms":
        from .bench import rooms as rooms_bench

        sys.exit(rooms_bench.main_report(as_json, quick=quick))
    if suite == "flood":
        from .bench import flood

        sys.exit(flood.main_report(list(flood.CASES), 2.0 if quick else 5.0, as_json))
    from .bench import arena_side
    from .bench.floor import Floor
    from .bench.report import compare, compare_etcd, etcd_caption, render

    rivals = {v.strip() for v in (versus or "").split(",") if v.strip()}
    if rivals - {"pysyncobj", "etcd"}:
        raise click.BadParameter(f"unknown {sorted(rivals - {'pysyncobj', 'etcd'})}; "
                                 "use pysyncobj, etcd or pysyncobj,etcd", param_hint="--vs")
    chosen = {w.strip() for w in workloads.split(",") if w.strip()}
    if quick:
        commits, failover_trials, memory_commits = 3000, 3, 20_000
    latency_writes = 200 if quick else 1000
    etcd = None
    floor = Floor()

    def run_arena(chosen: set[str]) -> dict:
        return arena_side.run(chosen, nodes=nodes, commits=commits, clients=clients,
                              failover_trials=failover_trials, memory_commits=memory_commits,
                              latency_writes=latency_writes, unbatched_throughput="etcd" in rivals)

    try:
        if "etcd" in rivals:
            from .bench import etcd_side
            from .bench.etcd_cluster import EtcdError, etcd_binary

            try:
                etcd_binary()
                ours, etcd = etcd_side.alternate(
                    chosen, run_arena, lambda chosen: etcd_side.run(
                        chosen, nodes=nodes, commits=commits, clients=clients,
                        latency_writes=latency_writes, failover_trials=failover_trials,
                        memory_commits=memory_commits),
                    floor.sample, arena_side.WORKLOADS)
            except EtcdError as e:  # EtcdUnavailable too
                raise click.ClickException(str(e)) from e
        else:
            ours = run_arena(chosen)
    except ValueError as e:
        raise click.ClickException(str(e)) from e
    theirs = None
    if "pysyncobj" in rivals:
        import importlib.util

        if importlib.util.find_spec("pysyncobj") is None:
            raise click.ClickException(
                "PySyncObj is not installed: .venv/bin/pip install -e '.[bench]'")
        from .bench import pysyncobj_side

        their_workloads = chosen & {"throughput", "latency", "failover", "memory"}
        theirs = pysyncobj_side.run(their_workloads, nodes=3, commits=commits, clients=clients,
                                    failover_trials=failover_trials)
    rows = compare(ours, theirs)
    etcd_rows = compare_etcd(ours, etcd, floor.result()) if etcd is not None else []
    if as_json:
        report = {"arena": ours, "pysyncobj": theirs, "comparison": [r.to_dict() for r in rows]}
        if etcd is not None:
            report.update(etcd=etcd, floor=floor.result(),
                          comparison_etcd=[r.to_dict() for r in etcd_rows])
        _emit(report, True)
    else:
        render(rows, f"arena bench ({nodes} nodes, durable){' vs PySyncObj' if theirs else ''}")
        if etcd is not None:
            render(etcd_rows, f"arena bench vs etcd ({nodes} nodes each, both durable)",
                   etcd_caption(floor.result(), etcd))


def setup_logging(level: str, node_id: str = "") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format=f"%(asctime)s %(levelname)s node={node_id} %(name)s: %(message)s",
    )


if __name__ == "__main__":
    main()
