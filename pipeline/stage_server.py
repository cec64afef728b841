"""A warm process that runs pipeline stages: ``python -m unlearn_pipeline <stage>`` hands its
stage to it instead of importing torch and MLflow again (about 2.5 s and 3 s on the 2-core
machine, in every one of the default graph's 37 stages).

The first stage of a session finds no server: it starts one in the background and runs in its
own process as before. The server binds its socket, imports :data:`PRELOAD` (third-party modules
only: the project's own code is imported afresh for every stage, so an edit always counts) and
waits. For each stage it forks a *waiter*, which forks the stage process. The stage process takes
the launching process's stdin, stdout and stderr (passed over the socket), its working
directory, environment, ``sys.path``, ``argv`` and umask, and runs the stage as
:func:`unlearn_pipeline.__main__.main` would. The waiter reports the stage's exit status to the
launcher, which exits with it; the launcher forwards SIGINT, SIGTERM and SIGHUP to the stage's
process group, and if the launcher dies (SIGKILL) the waiter kills the stage's group. What DVC
sees (the command, its output, its exit code, its signals) is unchanged, and the outputs are
bit-identical: the same libraries compute the same operations at the same thread count.

Servers are per user, in a private folder (``$XDG_RUNTIME_DIR/unlearn`` or
``/tmp/unlearn-<uid>``, or ``UNLEARN_STAGE_SERVER_DIR``), keyed by the interpreter, its flags,
the installed packages, this file and the environment variables that libraries read when they
are imported (:data:`KEY_PREFIXES`): a launcher whose key differs starts its own server. A
server ends after ``UNLEARN_STAGE_SERVER_IDLE_S`` seconds (default 300) without a stage, or on
SIGTERM. ``UNLEARN_STAGE_SERVER=0`` runs every stage in its own fresh process. Linux only
(macOS cannot fork a process that has loaded its system frameworks).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

from unlearn.errors import ConfigError

ENABLED_ENV = "UNLEARN_STAGE_SERVER"  # "0": no server; each stage runs in its own process
DIR_ENV = "UNLEARN_STAGE_SERVER_DIR"
IDLE_ENV = "UNLEARN_STAGE_SERVER_IDLE_S"
DEFAULT_IDLE_S = 300.0
# What every stage imports and no stage changes; never the project's own modules.
PRELOAD = ("numpy", "torch", "yaml", "pydantic", "threadpoolctl", "psutil", "mlflow",
           "mlflow.store.tracking.sqlalchemy_store", "mlflow.pytorch")
# Environment variables that the preloaded libraries (or the interpreter) read when imported.
KEY_PREFIXES = ("PYTHON", "OMP_", "KMP_", "MKL_", "OPENBLAS_", "GOTO", "BLIS_", "CUDA_", "NVIDIA_",
                "TORCH", "PYTORCH_", "LD_", "MALLOC", "JEMALLOC", "TZ")
PROJECT_PACKAGES = ("unlearn", "unlearn_pipeline")
MAX_REQUEST = 1 << 22


def enabled() -> bool:
    """Whether stages go to a server: ``UNLEARN_STAGE_SERVER`` is 1 (the default) or 0, on Linux."""
    value = os.environ.get(ENABLED_ENV, "1")
    if value not in ("0", "1"):
        raise ConfigError(f"{ENABLED_ENV} = {value!r}: allowed are 1 (stages run in a warm server, the default) "
                          "and 0 (each stage in its own process)")
    return value == "1" and sys.platform == "linux"


def idle_seconds() -> float:
    """``UNLEARN_STAGE_SERVER_IDLE_S``: how long a server waits for a stage before it ends."""
    value = os.environ.get(IDLE_ENV, str(DEFAULT_IDLE_S))
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise ConfigError(f"{IDLE_ENV} = {value!r}: allowed is a number of seconds > 0 (default {DEFAULT_IDLE_S:g})")
    return seconds


def server_dir() -> Path:
    """The user's private folder of servers (created 0700; refused if another user can enter it)."""
    base = os.environ.get(DIR_ENV)
    if base is None:
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        base = os.path.join(runtime, "unlearn") if runtime else f"/tmp/unlearn-{os.getuid()}"
    folder = Path(base).absolute()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = folder.stat()
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise PermissionError(f"{folder} is not private to this user (mode {info.st_mode & 0o777:o})")
    return folder


def _interpreter_flags() -> list[str]:
    import subprocess

    return subprocess._args_from_interpreter_flags()


def server_key(env: dict[str, str] | None = None) -> str:
    """What a server must share with its launcher: the interpreter, its flags, the installed
    packages (the site-packages folder's mtime moves on every install), this file, and the
    import-time environment."""
    import hashlib
    import sysconfig

    env = os.environ if env is None else env
    site = Path(sysconfig.get_paths()["purelib"])
    parts = {
        "python": [sys.executable, sys.version, *_interpreter_flags()],
        "site": [str(site), site.stat().st_mtime_ns if site.exists() else 0],
        "server": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
        "env": sorted((k, v) for k, v in env.items() if k.startswith(KEY_PREFIXES)),
    }
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def socket_path() -> Path:
    return server_dir() / f"{server_key()}.sock"


# ---------------------------------------------------------------- launcher side


def run_served(argv: list[str]) -> int | None:
    """Run ``python -m unlearn_pipeline`` with ``argv`` in a warm server; its exit status, or
    None when no server took it (one is then started for the stages that follow)."""
    if not enabled():
        return None
    idle = idle_seconds()
    try:
        path = socket_path()
    except OSError:
        return None
    try:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.connect(str(path))
    except OSError:
        start_server(path, idle)
        return None
    with connection:
        return _hand_over(connection, argv)


class Interrupted(KeyboardInterrupt):
    """A signal reached the launcher before its stage started (so the stage does not run)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _Forward:
    """The launcher's handler of SIGINT, SIGTERM and SIGHUP: before the stage runs, the signal ends
    the launcher (:class:`Interrupted`); afterwards it goes to the stage's process group."""

    def __init__(self) -> None:
        self.stage: int | None = None

    def __call__(self, signum: int, frame) -> None:
        if self.stage is None:
            raise Interrupted(signum)
        _signal_group(self.stage, signum)


FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _hand_over(connection: socket.socket, argv: list[str]) -> int | None:
    ignored = [signum for signum in FORWARDED if signal.getsignal(signum) == signal.SIG_IGN]  # the stage ignores them too
    request = json.dumps({
        "argv": argv, "cwd": os.getcwd(), "env": dict(os.environ), "path": sys.path, "umask": _umask(),
        "launcher": os.getpid(), "dont_write_bytecode": sys.dont_write_bytecode, "ignored": ignored,
        "encoding": getattr(sys.stdout, "encoding", None) or "utf-8",
    }).encode()
    forward = _Forward()
    before = {signum: signal.signal(signum, forward) for signum in set(FORWARDED) - set(ignored)}
    replies = connection.makefile("r")  # one buffered reader for both answers
    started = _send_request(connection, request, replies)
    if started is None:  # nothing ran: the stage runs in this process, with this process's handlers
        for signum, handler in before.items():
            signal.signal(signum, handler)
        return None
    forward.stage = started["pid"]
    ended = _reply(replies)
    if ended is None:
        print(f"error: the stage process (pid {forward.stage}) ended without an exit status", file=sys.stderr)
        return 1
    status = ended["status"]
    if status < 0:
        print(f"error: the stage process (pid {forward.stage}) was killed by signal {-status}", file=sys.stderr)
        return 128 - status
    return status


def _send_request(connection: socket.socket, request: bytes, replies) -> dict | None:
    """Send the request with this process's standard streams; the server's answer (the stage's
    pid), or None when a stream is closed (EBADF) or the server ended before forking the stage."""
    try:
        socket.send_fds(connection, [len(request).to_bytes(8, "big") + request], [0, 1, 2])
    except OSError:
        return None
    return _reply(replies)


def _reply(replies) -> dict | None:
    try:
        line = replies.readline()
    except OSError:
        return None
    return json.loads(line) if line.endswith("\n") else None


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def start_server(path: Path, idle_s: float) -> None:
    """Start a server on ``path`` that ends after ``idle_s`` seconds without a stage, in the
    background, detached from this process and its terminal."""
    import subprocess

    with contextlib.suppress(OSError):
        subprocess.Popen([sys.executable, *_interpreter_flags(), "-m", "unlearn_pipeline.stage_server", str(path),
                          str(idle_s)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True, close_fds=True)


# ---------------------------------------------------------------- server side


def serve(path: Path, idle_s: float) -> None:
    """Accept stages on ``path`` until ``idle_s`` seconds pass without one, or SIGTERM."""
    import fcntl

    lock = open(path.with_suffix(".lock"), "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # another server has this key
        return
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path.unlink(missing_ok=True)  # a server that died without removing it
    listener.bind(str(path))
    listener.listen(64)  # launchers that come while the imports run wait in the backlog
    os.chdir("/")  # hold no launcher's folder
    try:
        _preload()
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # waiters are reaped by the kernel
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, _stop)
        listener.settimeout(idle_s)
        log_file = path.with_suffix(".log")
        log = open(log_file, "a" if not log_file.exists() or log_file.stat().st_size < 1 << 20 else "w", buffering=1)
        while True:
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                break
            with connection:
                _accept(connection, listener, lock, log)
    except _Stop:
        pass
    finally:
        path.unlink(missing_ok=True)
        listener.close()


class _Stop(Exception):
    pass


def _stop(signum, frame) -> None:
    raise _Stop


def _preload() -> None:
    import importlib
    import warnings

    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    # Python 3.12 warns on fork() in a process with threads (OpenBLAS's, jemalloc's): they
    # register fork handlers, as for multiprocessing's forkserver, which forks the same way.
    warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)


def _accept(connection: socket.socket, listener: socket.socket, lock, log) -> None:
    connection.settimeout(10)
    fds: list[int] = []
    try:
        message, fds, _, _ = socket.recv_fds(connection, MAX_REQUEST, 3)
        size = int.from_bytes(message[:8], "big")
        while len(message) < 8 + size:
            chunk = connection.recv(MAX_REQUEST)
            if not chunk:
                raise ValueError("it closed before its request was whole")
            message += chunk
        request = json.loads(message[8:])
        if len(fds) != 3:
            raise ValueError("it passed no standard streams")
    except (OSError, ValueError) as error:
        log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} ignored a connection: {error}\n")
        for fd in fds:
            os.close(fd)
        return
    if os.fork() == 0:
        try:
            listener.close()
            lock.close()  # the server's lock must end with the server, not with a long stage
            log.close()
            connection.settimeout(None)
            _wait_for_stage(connection, request, fds)
        finally:
            os._exit(0)
    for fd in fds:
        os.close(fd)
    log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} launcher {request['launcher']} in {request['cwd']}: "
              f"{' '.join(request['argv'][1:])}\n")


def _wait_for_stage(connection: socket.socket, request: dict, fds: list[int]) -> None:
    """The waiter: fork the stage, tell the launcher its pid, then its exit status."""
    import select

    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    stage = os.fork()
    if stage == 0:
        connection.close()
        _run_stage(request, fds)  # never returns
    with contextlib.suppress(OSError):
        os.setpgid(stage, stage)  # as the stage does itself: whichever runs first, the launcher can signal the group
    for fd in fds:
        os.close(fd)
    launcher_alive = _send(connection, {"pid": stage})
    watch = [connection] if launcher_alive else []
    with contextlib.suppress(OSError):
        watch.append(os.pidfd_open(stage))
    if not launcher_alive:
        _signal_group(stage, signal.SIGKILL)
    while True:
        ready, _, _ = select.select(watch, [], [], None if len(watch) > 1 else 0.05)
        if connection in ready and not _receive(connection):  # the launcher is gone (killed)
            _signal_group(stage, signal.SIGKILL)
            watch.remove(connection)
        done, status = os.waitpid(stage, os.WNOHANG)
        if done:
            break
    _send(connection, {"status": os.waitstatus_to_exitcode(status)})


def _send(connection: socket.socket, message: dict) -> bool:
    try:
        connection.sendall(json.dumps(message).encode() + b"\n")
        return True
    except OSError:
        return False


def _receive(connection: socket.socket) -> bytes:
    """A byte from the launcher (which sends none), or b"" once it has closed or died."""
    try:
        return connection.recv(1)
    except OSError:
        return b""


def _run_stage(request: dict, fds: list[int]) -> None:
    """The stage process: become the launcher's stand-in, then run the stage."""
    os.setpgid(0, 0)  # its own group, which the launcher signals
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    for signum in FORWARDED:  # as the launcher had them (a background job ignores SIGINT)
        default = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
        signal.signal(signum, signal.SIG_IGN if signum in request["ignored"] else default)
    code = 1
    try:
        os.chdir(request["cwd"])
        os.umask(request["umask"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.path[:] = request["path"]
        sys.argv = request["argv"]
        sys.dont_write_bytecode = request["dont_write_bytecode"]
        _reopen_stdio(request["encoding"])
        _reset_logging()
        _forget_project_modules()
        from unlearn_pipeline import tracking
        from unlearn_pipeline.__main__ import main

        tracking.launcher_pid = request["launcher"]
        code = main(request["argv"][1:], companion=False)
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        import atexit

        with contextlib.suppress(BaseException):
            atexit._run_exitfuncs()
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _reopen_stdio(encoding: str) -> None:
    """Standard streams over the launcher's descriptors, buffered as Python buffers them (the
    server's own, over /dev/null, stay referenced by ``sys.__stdout__`` and so stay open)."""
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    sys.stdin = open(0, "r", encoding=encoding, closefd=False)
    sys.stdout = open(1, "w", buffering=1 if os.isatty(1) and not unbuffered else -1, encoding=encoding,
                      closefd=False)
    sys.stderr = open(2, "w", buffering=1, encoding=encoding, errors="backslashreplace", closefd=False)
    if unbuffered:
        sys.stdout.reconfigure(write_through=True)


def _reset_logging() -> None:
    """The root logger as a fresh interpreter has it: a preloaded module may have configured it
    (``mlflow.pytorch`` calls ``logging.basicConfig(level=ERROR)``), which in a stage's own
    process happens after the stage has configured it, and so does nothing."""
    import logging

    for handler in list(logging.root.handlers):
        logging.root.removeHandler(handler)
    logging.root.setLevel(logging.WARNING)


def _forget_project_modules() -> None:
    """The project's code is imported afresh (and from the launcher's ``sys.path``) by each stage."""
    import importlib

    for name in list(sys.modules):
        if name.split(".")[0] in PROJECT_PACKAGES:
            del sys.modules[name]
    importlib.invalidate_caches()


def stop_servers(folder: Path | None = None) -> list[int]:
    """SIGTERM every server in ``folder`` (default: this user's); the pids signalled."""
    import fcntl

    stopped = []
    for lock_file in sorted((folder or server_dir()).glob("*.lock")):
        with open(lock_file) as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                continue  # nobody holds it: no server
            except OSError:
                pid = int(lock.read().strip() or 0)
        if pid > 0:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
                stopped.append(pid)
    return stopped


def main() -> None:
    serve(Path(sys.argv[1]), float(sys.argv[2]))


if __name__ == "__main__":
    main()
