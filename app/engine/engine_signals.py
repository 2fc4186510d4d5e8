"""vLLM plugin: the engine processes leave termination to the server.

The server drains on SIGTERM/SIGINT: in-flight streams finish, then it shuts the engine down (``app.serving``). When
the whole process group is signalled (systemd's default ``KillMode=control-group``, a terminal's Ctrl-C), vLLM's
engine processes get the same signal. Left alone, the engine core starts its own shutdown and stops taking requests,
and on CPU the worker process that runs the model exits at once, so every in-flight stream ends with an error.

With this plugin (vLLM loads ``vllm.general_plugins`` entry points in every process it spawns), the engine core and
its worker processes ignore SIGTERM and SIGINT while the server lives. Termination comes from the server instead:

- :func:`enable` (server side, before the engine starts) wraps the function vLLM uses to stop its engine-core
  processes (``vllm.v1.engine.utils.shutdown``: on ``AsyncLLM.shutdown()``, a failed start, and at interpreter exit)
  so that it first sends :data:`RELEASE` to each engine core and gives it time to exit by itself; vLLM's SIGTERM
  and SIGKILL follow only for one that did not. An exit hook does the same for an exit that skips the
  engine's close (uvicorn's forced exit on a third Ctrl-C), before ``multiprocessing`` joins its children.
- In the engine core, :data:`RELEASE` puts vLLM's own SIGTERM/SIGINT handlers back, passes the release on to its
  worker processes, and runs vLLM's SIGTERM handler: the shutdown vLLM would have done on its SIGTERM.
- In a worker, :data:`RELEASE` puts vLLM's handlers back. Workers exit when the engine core closes their death pipe;
  the executor's SIGTERM is only its fallback for a worker that does not.
- The engine core watches the server process: should the server die without shutting it down (SIGKILL, a crash),
  the engine core releases itself and shuts down; its workers follow through their death pipe.

Active only in the engine processes of a server that called :func:`enable` (``SWEETIE_ENGINE_SERVER_PID`` holds the
server's pid), and only in processes where vLLM installed its own handlers, so a ``vllm serve`` started from the same
environment runs as shipped.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import multiprocessing
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from types import FrameType
from typing import Any

ENV = "SWEETIE_ENGINE_SERVER_PID"
ENTRY_POINT = "sweetiechat_engine_signals"  # pyproject.toml, [project.entry-points."vllm.general_plugins"]
SUPPORTED_VLLM = ("0.32.",)  # the handler installation and the process shutdown below were read in this version
RELEASE = signal.SIGUSR1  # from the server (or the engine core, to its workers): shut down the vLLM way
HELD = (signal.SIGTERM, signal.SIGINT)
ENGINE_CORE_NAME = "EngineCore"  # vLLM's process name for the engine core: EngineCore, EngineCore_DP<n>
VLLM_SHUTDOWN_TIMEOUT_S = 5.0  # vllm.v1.utils.shutdown, where no timeout is given
ORPHAN_EXIT_S = 2 * VLLM_SHUTDOWN_TIMEOUT_S  # an engine core whose server died exits by force after this long

SignalHandler = Callable[[int, FrameType | None], Any]

# Engine processes log through vLLM's logger tree, so these lines land beside vLLM's own in the engine's output.
_log = logging.getLogger(f"vllm.{__name__}")
_state: dict[str, Any] = {}


# --- server side -------------------------------------------------------------------------------------------------


def enable() -> bool:
    """Make the engine processes started from now on leave termination to this process; True when in effect.

    Call before ``AsyncLLM`` starts. False (and vLLM's own signal handling stays) where vLLM is not the version this
    was written for, or the entry point is not installed or not allowed by ``VLLM_PLUGINS``.
    """
    import structlog
    import vllm

    log = structlog.get_logger(__name__)
    if not vllm.__version__.startswith(SUPPORTED_VLLM):
        log.warning("engine_signals_off", reason=f"written for vLLM {SUPPORTED_VLLM}, found {vllm.__version__}")
        return False
    if not plugin_installed():
        log.warning("engine_signals_off", reason=f"vllm.general_plugins entry point {ENTRY_POINT} not loaded")
        return False
    import vllm.v1.engine.utils as engine_utils

    if not getattr(engine_utils.shutdown, "_sweetie_releases", False):
        engine_utils.shutdown = releasing(engine_utils.shutdown)
    if not _state.get("atexit"):
        _state["atexit"] = True
        atexit.register(release_at_exit)  # registered after multiprocessing's own, so it runs before that join
    os.environ[ENV] = str(os.getpid())
    return True


def plugin_installed() -> bool:
    """Whether vLLM will load this module in its engine processes."""
    import vllm.envs

    allowed = vllm.envs.VLLM_PLUGINS
    found = any(
        ep.name == ENTRY_POINT and ep.value == f"{__name__}:register"
        for ep in entry_points(group="vllm.general_plugins")
    )
    return found and (allowed is None or ENTRY_POINT in allowed)


def releasing(vllm_shutdown: Callable[..., None]) -> Callable[..., None]:
    """vLLM's ``shutdown(procs, timeout)`` for its engine-core processes, preceded by a release.

    Each released engine core shuts down the way vLLM does on SIGTERM, by itself. That includes waiting up to
    ``VLLM_WORKER_SHUTDOWN_TIMEOUT_SECONDS`` for its workers, which on CPU take about that long to leave (5 s by
    default, the same as vLLM's own budget for the engine core), so it gets that time on top of ``timeout`` (vLLM's
    5 s where None). Whatever is still alive then gets vLLM's own treatment: SIGTERM and at once SIGKILL.
    """

    def shutdown(procs: list[Any], timeout: float | None = None) -> None:
        import vllm.envs

        budget = VLLM_SHUTDOWN_TIMEOUT_S if timeout is None else timeout
        deadline = time.monotonic() + budget + vllm.envs.VLLM_WORKER_SHUTDOWN_TIMEOUT_SECONDS
        for proc in release(procs):
            proc.join(max(0.0, deadline - time.monotonic()))
        vllm_shutdown(procs, timeout=max(0.0, deadline - time.monotonic()))

    shutdown._sweetie_releases = True  # type: ignore[attr-defined]
    return shutdown


def release(procs: Iterable[Any]) -> list[Any]:
    """Send :data:`RELEASE` to each live engine-core process among ``procs`` (``multiprocessing`` processes); those."""
    released = [
        proc for proc in procs if proc.name.startswith(ENGINE_CORE_NAME) and proc.pid is not None and proc.is_alive()
    ]
    for proc in released:
        _signal(proc.pid, RELEASE)
    return released


def release_at_exit() -> None:
    """Stop the engine cores still running at exit (the engine was never closed), before ``multiprocessing`` joins
    them."""
    import vllm.v1.engine.utils as engine_utils

    engine_cores = [proc for proc in multiprocessing.active_children() if proc.name.startswith(ENGINE_CORE_NAME)]
    if engine_cores:
        engine_utils.shutdown(engine_cores)


# --- engine side -------------------------------------------------------------------------------------------------


def register() -> None:
    """Entry point (``vllm.general_plugins``); idempotent; a no-op outside the engine processes of :func:`enable`."""
    server = os.environ.get(ENV, "")
    if not server.isdigit() or int(server) == os.getpid() or _state.get("registered"):
        return
    installed = {sig: signal.getsignal(sig) for sig in HELD}
    vllm_handlers = {sig: handler for sig, handler in installed.items() if callable(handler)}
    if len(vllm_handlers) < len(HELD):
        return  # vLLM did not install its handlers here (not an engine core or worker): nothing to hold
    _state["registered"] = True
    engine_core = os.getppid() == int(server)
    hold(vllm_handlers, engine_core=engine_core)
    if engine_core:
        watch_server(int(server))


def hold(vllm_handlers: dict[signal.Signals, SignalHandler], *, engine_core: bool) -> None:
    """Ignore :data:`HELD` signals until :data:`RELEASE`; then restore ``vllm_handlers`` (and, in the engine core,
    release the workers and run vLLM's SIGTERM handler)."""
    released = False

    def held(signum: int, frame: FrameType | None) -> None:
        _log.info(
            "%s ignored by engine process %d: the server drains, then shuts the engine down",
            signal.Signals(signum).name,
            os.getpid(),
        )

    def on_release(signum: int, frame: FrameType | None) -> None:
        nonlocal released
        if released:
            return
        released = True
        for sig, handler in vllm_handlers.items():
            signal.signal(sig, handler)
        _log.info("engine process %d released: vLLM's SIGTERM/SIGINT handlers are back", os.getpid())
        if engine_core:
            for child in multiprocessing.active_children():
                if child.pid is not None:
                    _signal(child.pid, RELEASE)
            vllm_handlers[signal.SIGTERM](signal.SIGTERM, frame)

    for sig in HELD:
        signal.signal(sig, held)
    signal.signal(RELEASE, on_release)


def watch_server(server_pid: int) -> None:
    """Release this process (shut it down) when the server process is gone; a daemon thread."""

    def wait_and_release() -> None:
        wait_for_exit(server_pid)
        _log.warning("server process %d is gone: engine core %d shutting down", server_pid, os.getpid())
        _signal(os.getpid(), RELEASE)  # the handler runs on the main thread, as a signal from the server would
        time.sleep(ORPHAN_EXIT_S)  # no one is left to escalate: do it here (the workers follow by their death pipe)
        _log.warning("engine core %d still running %.0f s after its server died: exiting", os.getpid(), ORPHAN_EXIT_S)
        os._exit(1)

    threading.Thread(target=wait_and_release, name="sweetie-server-watch", daemon=True).start()


def wait_for_exit(pid: int) -> None:
    """Block until process ``pid``, this process's parent, has exited."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except OSError:  # no pidfd (Linux < 5.3): poll the parent instead
        while os.getppid() == pid:
            time.sleep(0.5)
        return
    try:
        if os.getppid() != pid:  # gone (and re-parented) before the pidfd was open: ``pid`` may be another process
            return
        select.select([fd], [], [])
    finally:
        os.close(fd)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # exited meanwhile
        os.kill(pid, sig)
