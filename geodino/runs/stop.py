"""Stopping a run cleanly when the scheduler (or the user) asks: finish the step, write a checkpoint,
exit with :data:`EXIT_STOPPED` and one line.

Schedulers send SIGTERM before they preempt or cancel a job (SLURM, Kubernetes), SLURM sends the
signal chosen with ``--signal=USR1@90`` ahead of the time limit, and Ctrl-C is SIGINT. A second
SIGINT stops at once, without a checkpoint.

With several processes the signal can reach them at different steps. Every step each process
starts an all-reduce (max) of its request and reads the one started a step earlier, which has long
finished by then: all processes see the same request at the same step, and no step waits for it.

torch is imported where it is used: the command line imports this module to catch
:class:`RunStopped`, and ``geodino --help`` must stay fast.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING, Any, Callable

from geodino.utils import STOP_SIGNALS, to_device_async, to_host_async

if TYPE_CHECKING:
    import torch

log = logging.getLogger("geodino")

# sysexits' EX_TEMPFAIL: a temporary failure, run the same command again to continue.
EXIT_STOPPED = 75


class TrainingDiverged(RuntimeError):
    """Training met a non-finite loss or weights and ended without saving them (pretraining,
    fine-tuning); the message names the step and what was kept. The command line ends on it with
    one line, as for any error a user's settings or data can cause."""


class RunStopped(Exception):
    """The run stopped on a signal after writing a checkpoint; re-running the same command continues."""

    def __init__(self, signum: int, step: int, checkpoint: str) -> None:
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}; checkpoint written to "
                         f"{checkpoint}; re-run the same command to continue")


class StopRequests:
    """While entered, records the first stop signal instead of dying of it; :meth:`agreed` says,
    once all processes know, which signal asked the run to stop."""

    def __init__(self, world: int = 1, device: torch.device | str = "cpu") -> None:
        self.world, self.device = world, device
        self.signum = 0  # the first stop signal received by this process, 0: none
        self._previous: dict[int, Any] = {}
        # the last all-reduce: its work (None once waited for) and a function giving its result
        self._pending: tuple[Any, Callable[[], torch.Tensor]] | None = None

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        if self._pending is not None and self._pending[0] is not None:
            self._pending[0].wait()  # a collective left running would pair with another one
        self._pending = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum and signum == signal.SIGINT:
            raise KeyboardInterrupt  # Ctrl-C twice: stop now
        if not self.signum:
            self.signum = signum
            log.warning("received %s: finishing this step, then writing a checkpoint and stopping",
                        signal.Signals(signum).name)

    def agreed(self) -> int:
        """The stop signal all processes have agreed on (0: go on). Call it once per step on every
        process; with several processes a request is seen one step after it was made."""
        import torch
        import torch.distributed as dist

        if self.world == 1 or not dist.is_initialized():
            return self.signum
        agreed = 0
        if self._pending is not None:
            work, result = self._pending
            if work is not None:
                work.wait()
            agreed = int(result()[0])
        flag = to_device_async(torch.tensor([self.signum], dtype=torch.int64), torch.device(self.device))
        work = dist.all_reduce(flag, op=dist.ReduceOp.MAX, async_op=True)
        if flag.is_cuda:
            # NCCL's wait() only queues the compute stream behind the reduce; the result follows it
            # to pinned memory, which the next step reads without waiting for its own kernels
            # (reading the flag on the GPU then waited for every step to finish: a GPU idle
            # while the host prepared the next one, on every step of a multi-GPU run).
            work.wait()
            self._pending = (None, to_host_async(flag))
        else:  # gloo on the CPU: the reduce finishes in the background; waited for next step
            self._pending = (work, lambda: flag)
        return agreed
