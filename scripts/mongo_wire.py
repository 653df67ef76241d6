#!/usr/bin/env python3
"""Run a throwaway MongoDB wire-protocol server (nx-27017) for tests and CI.

No MongoDB server can be installed on the build machines, so the tests that go
through the real MongoDB wire protocol (pymongo, Appier's Mongo adapter) talk to
``nx-27017`` instead: a MongoDB wire-protocol server backed by SQLite
(``pip install nx-27017``; a test-only tool, never a dependency of Pushi).

This script:

1. starts nx-27017 bound to a loopback address, on the given port or on a free
   one, storing its data in the given directory or in a temporary one (one
   SQLite file ``<database>.db`` per logical database, so databases are
   isolated from each other);
2. waits, for a bounded time, until pymongo can ``ping`` it, and checks that the
   server answering is the child it started (not another process that took
   the port);
3. prints ``mongodb://HOST:PORT/`` on stdout (one line, nothing else goes to
   stdout) and keeps running until it is told to stop;
4. on SIGTERM, SIGINT or SIGHUP stops the child (SIGTERM, then SIGKILL after a
   grace period), removes what it created, and exits 0.

If the server cannot be started it exits 1 and prints the reason and the tail
of the server's log on stderr. If the server dies while running, it exits 1.

Usage::

    python3 scripts/mongo_wire.py                       # free port, temp data dir
    python3 scripts/mongo_wire.py --port 27018 --data-dir ./nx-data

    # from a shell (see .ci/run): start it, read the URL line, stop it later
    python3 scripts/mongo_wire.py > url.txt & wire_pid=$!
    ...  # wait until url.txt has a line
    export MONGO_URL="$(head -n 1 url.txt)pushi_test"
    kill "$wire_pid"; wait "$wire_pid"
"""

from __future__ import annotations

import argparse
import collections
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from types import FrameType

DEFAULT_HOST = "127.0.0.1"
DEFAULT_TIMEOUT = 30.0
STOP_GRACE = 10.0
PORT_ATTEMPTS = 3
LOG_NAME = "nx-27017.log"

# Runs nx-27017's own command line (console script ``nx-27017``) with the
# current interpreter, so it works whether or not the scripts dir is on PATH.
# Its first argument, removed before nx-27017 parses the rest, is this
# process's pid: on Linux the child asks to get SIGTERM when its parent dies
# (so a SIGKILLed wrapper leaves no server behind), then checks that the parent
# did not die before it asked.
NX_LAUNCHER = """\
import os, signal, sys
parent = int(sys.argv.pop(1))
if sys.platform.startswith("linux"):
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass
if os.getppid() != parent:
    sys.exit("mongo_wire: parent process gone, not starting nx-27017")
from nx_27017.nx_27017 import main
sys.exit(main())
"""


class StartError(RuntimeError):
    """The wire server could not be started (or was not the one answering)."""


class Stop(BaseException):
    """Raised from the signal handler to leave the wait loops.

    A ``BaseException`` (like ``KeyboardInterrupt``) so that no ``except
    Exception`` on the way, ours or a library's, swallows it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def log(message: str) -> None:
    """Write a diagnostic line on stderr (stdout carries only the URL)."""
    print(f"mongo_wire: {message}", file=sys.stderr, flush=True)


def free_port(host: str) -> int:
    """Return a TCP port on ``host`` that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(path: str, lines: int = 40) -> str:
    """Return the last ``lines`` lines of the file at ``path`` ('' if none)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return "".join(collections.deque(file, maxlen=lines))
    except OSError:
        return ""


def spawn(
    host: str, port: int, data_dir: str, run_dir: str, log_path: str
) -> subprocess.Popen[bytes]:
    """Start nx-27017 in the background and return its ``Popen``."""
    command = [
        sys.executable,
        "-c",
        NX_LAUNCHER,
        str(os.getpid()),
        "--host",
        host,
        "--port",
        str(port),
        "--data-dir",
        data_dir,
        # nx-27017 defaults to /tmp/nx_27017.pid and refuses to start while
        # the process named there runs: a private pid file per instance
        "--pid-file",
        os.path.join(run_dir, "nx-27017.pid"),
        # its console output (below) already carries every log record
        "--log-file",
        os.devnull,
    ]
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=run_dir,
        )


def wait_ready(
    process: subprocess.Popen[bytes], host: str, port: int, deadline: float
) -> None:
    """Wait until the server started as ``process`` answers ``ping``.

    Raises ``StartError`` if the process exits, if another process answers on
    the port, or if ``deadline`` (a ``time.monotonic()`` value) passes.
    """
    import pymongo
    import pymongo.errors

    url = f"mongodb://{host}:{port}/"
    last_error = "no attempt made"
    while True:
        if process.poll() is not None:
            raise StartError(f"nx-27017 exited with status {process.returncode}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise StartError(f"no answer to ping on {url}: {last_error}")
        timeout_ms = int(max(100, min(1000, remaining * 1000)))
        client = pymongo.MongoClient(
            url,
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            socketTimeoutMS=max(timeout_ms, 5000),
            directConnection=True,
        )
        try:
            client.admin.command("ping")
            status = client.admin.command("serverStatus")
        except pymongo.errors.PyMongoError as error:
            last_error = f"{type(error).__name__}: {error}"
            time.sleep(0.1)
            continue
        finally:
            client.close()
        pid = status.get("pid")
        if pid is not None and pid != process.pid:
            raise StartError(
                f"{url} is answered by another process (pid {pid}), not by "
                f"nx-27017 (pid {process.pid})"
            )
        return


def stop(process: subprocess.Popen[bytes], grace: float = STOP_GRACE) -> None:
    """Stop the child: SIGTERM, then SIGKILL if it outlives ``grace`` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        log(f"nx-27017 (pid {process.pid}) ignored SIGTERM, killing it")
        process.kill()
        process.wait()


def loopback_host(value: str) -> str:
    """argparse type: accept only a loopback IPv4 address."""
    try:
        address = ipaddress.IPv4Address(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not an IPv4 address: {value}") from error
    if not address.is_loopback:
        raise argparse.ArgumentTypeError(f"not a loopback address: {value}")
    return value


def port_number(value: str) -> int:
    """argparse type: a TCP port, 0 meaning 'pick a free one'."""
    port = int(value)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range: {value}")
    return port


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description=(
            "Start nx-27017 (MongoDB wire protocol on SQLite) on loopback, print "
            "its mongodb:// URL once it answers ping, run until SIGTERM/SIGINT."
        )
    )
    parser.add_argument(
        "--host",
        type=loopback_host,
        default=DEFAULT_HOST,
        help=f"loopback address to bind (default {DEFAULT_HOST})",
    )
    parser.add_argument(
        "--port",
        type=port_number,
        default=0,
        help="TCP port (default 0: a free port)",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help=(
            "directory for the SQLite files, one <database>.db per database, "
            "kept at exit (default: a temporary directory, removed at exit)"
        ),
    )
    parser.add_argument(
        "--log-file",
        default=None,
        help=(
            f"server log (default: {LOG_NAME} in the data directory; with a "
            "temporary data directory it goes away with it)"
        ),
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds to wait for the server to answer (default {DEFAULT_TIMEOUT:g})",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the tool; return the process exit status."""
    args = parse_args(argv)

    try:
        import nx_27017  # noqa: F401
        import pymongo  # noqa: F401
    except ImportError as error:
        log(f"{error.name} is not installed (pip install nx-27017)")
        return 1

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise Stop(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)

    run_dir = tempfile.mkdtemp(prefix="mongo-wire-")
    if args.data_dir:
        data_dir = os.path.abspath(args.data_dir)
        os.makedirs(data_dir, exist_ok=True)
    else:
        data_dir = os.path.join(run_dir, "data")
        os.makedirs(data_dir)
    log_path = os.path.abspath(args.log_file or os.path.join(data_dir, LOG_NAME))

    process: subprocess.Popen[bytes] | None = None
    try:
        # a port picked here may be taken by someone else before the child
        # binds it; the child then exits and another free port is tried
        attempts = 1 if args.port else PORT_ATTEMPTS
        deadline = time.monotonic() + args.timeout
        for attempt in range(1, attempts + 1):
            port = args.port or free_port(args.host)
            process = spawn(args.host, port, data_dir, run_dir, log_path)
            try:
                wait_ready(process, args.host, port, deadline)
                break
            except StartError as error:
                stop(process)
                retry = attempt < attempts and time.monotonic() < deadline
                if not retry:
                    log(f"could not start nx-27017: {error}")
                    tail = log_tail(log_path)
                    if tail:
                        log(f"last lines of {log_path}:\n{tail}")
                    return 1
                log(f"{error}; retrying on another port")

        assert process is not None
        print(f"mongodb://{args.host}:{port}/", flush=True)
        log(
            f"nx-27017 pid {process.pid} ready on {args.host}:{port}, "
            f"data in {data_dir}, log in {log_path}"
        )

        status = process.wait()
        log(f"nx-27017 exited unexpectedly with status {status}")
        tail = log_tail(log_path)
        if tail:
            log(f"last lines of {log_path}:\n{tail}")
        return 1
    except Stop as stop_signal:
        log(f"stopping on {signal.Signals(stop_signal.signum).name}")
        return 0
    finally:
        # no second signal may interrupt the clean-up
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        if process is not None:
            stop(process)
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
