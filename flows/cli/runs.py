"""The flow runs a command runs against the local Prefect server: watched while they run, and
recorded, so that a run whose process was killed is marked Crashed rather than left Running.

**A lost server fails fast.** While a flow runs, a thread looks every half second whether the
local server's process is still the recorded one (:meth:`ProcessId.running`). Once it is gone,
it interrupts the command (a signal to the main thread, again each second while the run unwinds,
since Prefect's client would otherwise wait out its retries against a server that will not
answer), and the run ends in :class:`ServerLost`: one line saying that outputs written so far
stay, and that the same command again starts a server and reuses the finished stages. A command
held longer in a model's native code is ended as :func:`when_stuck` says.

**A killed run is marked Crashed.** When a flow run enters Running, its id is recorded in the
Prefect home with the process that runs it (pid and start time); the record goes once the run
ends in that process. A run killed with its process (SIGKILL, a lost server, a power cut)
leaves its record, and the next command (:func:`mark_crashed`) sets every recorded run whose
process is gone, and that the server still calls Running or Pending, Crashed, saying so.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flows.cli.home import paths
from flows.cli.processes import ProcessId, read_record
from voxflow.atomic import write_json
from voxflow.errors import VoxflowError
from voxflow.settings import load_settings

LOOK_S = 0.5
"""How often the watcher looks whether the local server still runs."""

_AGAIN_S = 1.0
"""How often it interrupts the command again while the run unwinds."""

_SIGNAL = signal.SIGUSR1
"""What interrupts the command: a real signal, unlike ``_thread.interrupt_main()``, also ends a
sleep between Prefect's retries; not SIGINT, which a command started in the background (``&``,
``nohup``) ignores."""


class ServerLost(VoxflowError):
    """The local Prefect server ended while a command ran a flow against it."""

    exit_code = 1

    def __init__(self, pid: int, output: Path) -> None:
        super().__init__(
            f"the local Prefect server (pid {pid}) ended during the run; outputs written so far "
            f"stay in {output}; run the same command again: it starts a server and reuses the "
            "finished stages"
        )


GRACE_S = 5.0
"""How long a command has to unwind once its server ended before :func:`when_stuck` acts: its
main thread may be in a model's native code (a batch of ASR windows), which no signal ends."""

_STUCK: list[Callable[[str], None]] = []


def when_stuck(act: Callable[[str], None]) -> None:
    """Have ``act`` called with the :class:`ServerLost` line when a command has not unwound
    :data:`GRACE_S` after its server ended: a process of its own (the CLI) writes the line and
    ends. It is called under the watch's lock, so the command's own line never follows it."""
    _STUCK[:] = [act]


class _Watch:
    """The thread that interrupts the command once the server's process is gone."""

    def __init__(self, server: ProcessId, output: Path) -> None:
        self.server, self.output = server, output
        self.lost = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._main = threading.main_thread().ident

    def start(self) -> None:
        threading.Thread(target=self._look, name="voxflow-server-watch", daemon=True).start()

    def _look(self) -> None:
        while not self._done.wait(LOOK_S):
            if not self.server.running():
                break
        else:
            return
        self.lost.set()
        stuck_at = time.monotonic() + GRACE_S
        while not self._done.is_set():
            with self._lock:  # never once the watched block has ended
                if self._done.is_set():
                    return
                if stuck_at is not None and time.monotonic() >= stuck_at and _STUCK:
                    _STUCK[0](str(ServerLost(self.server.pid, self.output)))
                    stuck_at = None  # once; the command still has to unwind
                signal.pthread_kill(self._main, _SIGNAL)
            self._done.wait(_AGAIN_S)

    def stop(self) -> None:
        with self._lock:
            self._done.set()


@contextmanager
def watched(server: ProcessId, output: Path) -> Iterator[None]:
    """Run the block while the local server's process ``server`` runs.

    Raises:
        ServerLost: The server ended meanwhile (whatever the block raised then, an interrupt
            or Prefect's failure to reach it, is its cause).
    """
    if threading.current_thread() is not threading.main_thread():  # no signal reaches it
        yield
        return
    watch = _Watch(server, output)
    previous = signal.signal(_SIGNAL, signal.default_int_handler)  # raises KeyboardInterrupt
    # Prefect's API log worker writes each failure to send to stderr, without a line end, when
    # this is set: a server lost meanwhile is said once, by this watch (the CLI owns its
    # process; the run's log lines still reach the console).
    reports, logging.raiseExceptions = logging.raiseExceptions, False
    watch.start()
    try:
        yield
    except BaseException as e:
        watch.stop()
        if watch.lost.is_set():
            raise ServerLost(server.pid, output) from e
        raise
    finally:
        watch.stop()  # first: no signal comes once its handler is gone
        signal.signal(_SIGNAL, previous)
        logging.raiseExceptions = reports


# ---- what a killed run leaves, and marking it Crashed -----------------------------------------


def _folder() -> Path:
    """Where the runs in flight are recorded: ``<PREFECT_HOME>/voxflow-runs`` (0700)."""
    folder = paths().root / "voxflow-runs"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def _record_running(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect's ``on_running`` hook: record the run with this process (pid, start time)."""
    me = ProcessId.me()
    write_json(
        _folder() / f"{flow_run.id}.json",
        {"pid": me.pid, "start": me.start, "flow_run": str(flow_run.id), "name": flow_run.name},
    )


def recording(flow: Any) -> Any:
    """``flow`` with a hook that records each of its runs once it is Running (see
    :func:`mark_crashed`)."""
    return flow.with_options(on_running=[*flow.on_running_hooks, _record_running])


def finished(started: set[Path]) -> None:
    """Drop the records of the runs that this process ran to an end (whatever their state:
    Prefect has set it)."""
    me = ProcessId.me()
    for path in started:
        entry = read_record(path, {"flow_run": str}, "flow run")
        if entry is not None and (entry["pid"], entry["start"]) == (me.pid, me.start):
            path.unlink(missing_ok=True)


def in_flight() -> set[Path]:
    """The records of the runs in flight now, in any process."""
    return set(_folder().glob("*.json"))


def local_server() -> Any:
    """The local server (:class:`~flows.cli.server.LocalServer`) this command's flows run
    against; None with a server of the user's own (``PREFECT_API_URL`` set to another)."""
    from flows.cli import server

    found = server.recorded()
    if found is None or load_settings().prefect_api_url != found.api:
        return None
    return found


def mark_crashed(say: Callable[[str], None]) -> None:
    """Set Crashed every recorded run whose process is gone and that the server still calls
    Running or Pending, and drop its record; ``say`` gets a line for each run marked, or one
    line when the server could not be asked (the run's own calls then say more)."""
    from httpx import HTTPError
    from prefect.exceptions import PrefectHTTPStatusError

    try:
        for line in _mark_crashed():
            say(line)
    except (HTTPError, PrefectHTTPStatusError) as e:
        say(f"could not mark the runs of killed commands Crashed ({e})")


def _mark_crashed() -> list[str]:
    """What :func:`mark_crashed` does; a line per run marked."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Crashed

    orphans = []
    for path in sorted(in_flight()):
        entry = read_record(path, {"flow_run": str}, "flow run")
        if entry is None:
            path.unlink(missing_ok=True)
        elif not ProcessId(entry["pid"], entry["start"]).running():
            orphans.append((path, entry))
    if not orphans:
        return []
    marked = []
    with get_client(sync_client=True) as client:
        for path, entry in orphans:
            try:
                state = client.read_flow_run(entry["flow_run"]).state
            except ObjectNotFound:  # another server's database: not this one's to mark
                path.unlink(missing_ok=True)
                continue
            if state is not None and (state.is_running() or state.is_pending()):
                message = f"its process (pid {entry['pid']}) was killed, or lost its server"
                client.set_flow_run_state(entry["flow_run"], Crashed(message=message), force=True)
                marked.append(f"flow run {entry['flow_run']} marked Crashed: {message}")
            path.unlink(missing_ok=True)
    return marked
