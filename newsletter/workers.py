"""Several worker processes over one ledger: one send uses every core.

One Python process spends its time in the interpreter, under one lock (the GIL), so a send
is spread over processes, each a `SendRun` with its own connections, claiming rows from the
same ledger: the claims, leases and fenced marks (ledger.py) keep them from ever sending a
row twice. The parent only starts them, adds up their progress for the display, and says
how the pass ended. The workers share the host's limits: the connections (`concurrency`,
what a relay counts), `rate / N` and `hourly cap / N`, so each holds for the whole host; a
worker that ends early does not lend its share to the others.

Processes are started with `spawn` (not `fork`: the parent may hold threads and open
connections), so a worker costs a fresh interpreter, about a quarter of a second (it loads
what sends, not the renderer: prepared.py): `auto` starts extra workers only for sends
large enough to gain from them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import multiprocessing
import multiprocessing.connection
import os
import time
from collections.abc import Callable, Sequence
from multiprocessing.sharedctypes import SynchronizedArray
from pathlib import Path
from typing import Any

from .config import Settings
from .delivery import Progress, RunResult, SendOptions, SendRun, share_of, worker_name
from .errors import DeliveryError, NewsletterError
from .ledger import Stopped
from .prepared import thaw
from .stopping import (
    Terminated,
    carry_on_after_hangup,
    ctrl_c_deferred,
    stop_gently_on_sigterm,
    stop_with_parent,
    terminating,
)

# Below this many messages due, a send stays in one process: starting more costs more.
AUTO_MIN_MESSAGES = 2000
_FIELDS = ("sent", "failed", "deferred", "uncertain", "skipped")
# each worker's place in the shared array: its counts, then until when (epoch seconds) the
# hourly cap holds it back, 0 when it does not
_SLOTS = len(_FIELDS) + 1
_ENDED = -1  # (in that place: the worker's pass is over, whether held or not)
# why the parent asks every worker to stop (its shared `stop` flag), and what status says
_OTHERS, _INTERRUPTED, _TERMINATED = 1, 2, 3
_TOLD = {
    _OTHERS: Stopped.STOPPED,
    _INTERRUPTED: Stopped.INTERRUPTED,
    _TERMINATED: Stopped.TERMINATED,
}


def how_many(requested: int, due: int, connections: int, hourly_cap: int = 0) -> int:
    """Worker processes for a pass: `requested`, or 0 for one per core when it pays; never
    more than the host's connections (each worker needs one of its own), nor than its
    hourly cap (each keeps a whole part of it)."""
    if requested:
        wanted = requested
    else:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        wanted = max(1, cores or os.cpu_count() or 1) if due >= AUTO_MIN_MESSAGES else 1
    return max(1, min(wanted, connections, hourly_cap or wanted))


def share(options: SendOptions, processes: int, slot: int) -> SendOptions:
    """What worker `slot` of `processes` may use of the host's connections and limits."""
    each, more = divmod(options.concurrency, processes)
    return dataclasses.replace(
        options,
        workers=1,
        concurrency=max(1, each + (slot < more)),
        rate=options.rate / processes,
        hourly_cap=share_of(options.hourly_cap, (slot, processes)),  # they add up to it
        part=(slot, processes),
        start=(slot + options.start) / processes,
    )


@dataclasses.dataclass(frozen=True)
class _Job:
    settings: Settings
    issue_id: str
    issue_dir: str
    options: SendOptions
    slot: int
    parent: int  # the process that started the worker
    # the hour's messages as the parent saw them before any worker began: how long ago
    # each went (the longest ago first), at `measured` (epoch seconds)
    sent_ago: tuple[float, ...] = ()
    measured: float = 0.0


def _child(job: _Job, counts: SynchronizedArray, stop: Any, to_send: Any) -> None:
    """One worker process: thaw the frozen editions from the ledger, run one pass."""
    from .ledger import Ledger

    stop_gently_on_sigterm()  # `systemctl stop` signals every process of the service
    carry_on_after_hangup()  # as the parent does: the hangup reaches the whole group
    outcome: dict[str, Any] = {"slot": job.slot}
    try:
        stop_with_parent(job.parent)  # (it may be gone already: then Terminated, below)
        ledger = Ledger(job.settings.db_path, job.issue_id)
        try:
            prepared = thaw(job.settings, job.issue_id, Path(job.issue_dir), ledger.frozen())
            base = job.slot * _SLOTS

            def publish(recorded: Progress) -> None:
                # at each commit of outcomes (the parent reads them five times a second):
                # killed, the worker has told the parent of nothing the ledger does not have
                for n, name in enumerate(_FIELDS):
                    counts[base + n] = getattr(recorded, name)

            def held(progress: Progress) -> None:
                counts[base + len(_FIELDS)] = math.ceil(progress.held_until)

            run = SendRun(
                ledger,
                prepared.transport,
                prepared.editions,
                prepared.personalise,
                job.options,
                signer=prepared.signer,
                on_recorded=publish,
                on_progress=held if job.options.hourly_cap else lambda p: None,
                worker=worker_name(),
                sent_ago=[ago + time.time() - job.measured for ago in job.sent_ago],
            )
            watcher = _StopWatcher(stop, run)
            try:
                result = run.run()
            finally:
                counts[base + len(_FIELDS)] = _ENDED
            watcher.done = True
            outcome.update(
                paused=result.paused,
                held=result.held,
                interrupted=result.interrupted,
                terminated=result.terminated,
                lapsed=result.lapsed,
            )
        finally:
            ledger.close()
    except NewsletterError as exc:
        outcome["error"] = str(exc)
    except KeyboardInterrupt as exc:
        outcome.update(interrupted=True, terminated=isinstance(exc, Terminated))
    except Exception as exc:  # noqa: BLE001 - reported by the parent, in one line
        outcome["error"] = f"a worker failed: {type(exc).__name__}: {exc}"
    if outcome.get("paused") or outcome.get("error"):
        stop.value = _OTHERS  # one worker's pause or failure stops the others
    with contextlib.suppress(OSError):  # the send is gone: nobody to tell
        to_send.send(outcome)  # (its pipe back to the send)
    to_send.close()


class _StopWatcher:
    """Passes the parent's stop (another worker paused or failed) to this worker's run.
    The stop is a flag in shared memory, read five times a second, not a multiprocessing
    Event: a worker that ended while waiting on one leaves it a sleeper that never wakes,
    and the next set() waited for it for ever."""

    def __init__(self, stop: Any, run: SendRun):
        import threading

        self.done = False

        def watch() -> None:
            while not self.done:
                if stop.value:
                    run.told = _TOLD[stop.value]  # (for status: why it stopped)
                    run.stop.set()
                    return
                time.sleep(0.2)

        threading.Thread(target=watch, name="send-stop", daemon=True).start()


def run_pass(
    settings: Settings,
    issue_id: str,
    issue_dir: Path,
    options: SendOptions,
    processes: int,
    on_progress: Callable[[Progress], None] = lambda p: None,
    sent_ago: Sequence[float] = (),
) -> RunResult:
    """One pass over the ledger in `processes` worker processes; like SendRun.run.
    `sent_ago`: the last hour's messages, for the hourly cap (Ledger.sent_within), as
    they were before the workers began."""
    measured = time.time()
    # (called inside campaign.run's shielded(): SIGTERM is recorded, seen by stopping())
    if terminating():  # SIGTERM came before this pass began: start no worker
        return RunResult(Progress(), interrupted=True, terminated=True)
    interrupted = terminated = False
    try:
        with ctrl_c_deferred():  # (not with some made or started and the others not)
            ctx = multiprocessing.get_context("spawn")
            counts = ctx.Array("q", processes * _SLOTS, lock=False)
            stop = ctx.RawValue("b", 0)  # set (to why): every worker stops (see _StopWatcher)
            # each worker's outcome comes back on a pipe of its own, not a Queue: a Queue's
            # locks are named semaphores, which a `send` killed outright leaves to
            # multiprocessing's resource tracker, and it warned of them in two lines of its own
            pipes = [ctx.Pipe(duplex=False) for _ in range(processes)]
            children = [
                ctx.Process(
                    target=_child,
                    args=(
                        _Job(
                            settings,
                            issue_id,
                            str(issue_dir),
                            share(options, processes, n),
                            n,
                            os.getpid(),
                            tuple(sent_ago),
                            measured,
                        ),
                        counts,
                        stop,
                        pipes[n][1],
                    ),
                    name=f"send-worker-{n}",
                )
                for n in range(processes)
            ]
            for child in children:
                child.start()
    except KeyboardInterrupt:  # those that got it too finish their messages, then report
        interrupted = True
        stop.value = _INTERRUPTED
    for _, sending_end in pipes:
        sending_end.close()  # the worker's now: its end closing says it has ended
    waiting = [reading_end for reading_end, _ in pipes]
    outcomes: list[dict[str, Any]] = []

    def stopping() -> None:
        nonlocal interrupted, terminated
        if terminating() and not terminated:
            # SIGTERM (maybe to this process only): the workers finish the messages in
            # flight, then report
            interrupted = terminated = True
            stop.value = _TERMINATED

    def total() -> Progress:
        sums = [sum(counts[w * _SLOTS + n] for w in range(processes)) for n in range(5)]
        # held by the cap only when every worker still sending is: else messages still go
        running = [h for w in range(processes) if (h := counts[w * _SLOTS + len(_FIELDS)]) >= 0]
        held = min(running) if running and all(running) else 0
        return Progress(**dict(zip(_FIELDS, sums, strict=True)), held_until=held)

    def collect() -> None:
        while waiting:
            ready = multiprocessing.connection.wait(waiting, timeout=0.2)
            if not ready:
                stopping()
                on_progress(total())
            for pipe in ready:
                with contextlib.suppress(EOFError, OSError):  # ended without a word: killed
                    outcomes.append(pipe.recv())  # type: ignore[union-attr]
                waiting.remove(pipe)  # type: ignore[arg-type]
                pipe.close()  # type: ignore[union-attr]

    while True:
        try:
            collect()
            break
        except KeyboardInterrupt:
            # Ctrl-C: the workers got it too; they finish the messages in flight, then report
            interrupted = True
            stop.value = _INTERRUPTED
    for child in children:
        child.join()
    errors = [o["error"] for o in outcomes if o.get("error")]
    if errors:
        raise DeliveryError(errors[0])
    paused = next((o["paused"] for o in outcomes if o.get("paused")), None)
    lost = processes - len(outcomes)
    if lost and not paused:
        paused = (
            f"paused: {lost} worker process(es) stopped unexpectedly (killed?) and the others "
            "finished; run send again: what the lost ones held is reported uncertain"
        )
    return RunResult(
        total(),
        paused,
        held=any(o.get("held") for o in outcomes),
        interrupted=interrupted or any(o.get("interrupted") for o in outcomes),
        terminated=terminated or any(o.get("terminated") for o in outcomes),
        lapsed=any(o.get("lapsed") for o in outcomes),
    )
