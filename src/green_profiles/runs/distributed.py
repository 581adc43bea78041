"""One run's windows across processes: the ranks of a ``torchrun`` job measure one run together.

Under ``torchrun`` (or ``python -m torch.distributed.run``, on one machine or several
through its rendezvous) every process runs the same command. Each one:

- learns its place from torchrun's environment (``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``: :func:`world_from_environment`) and picks its device, ``cuda:LOCAL_RANK``
  where CUDA is available, else the CPU (:func:`rank_device`);
- samples the same windows from the same seed (checked: :meth:`Group.agree` compares
  a digest of every rank's window token ids and run key, and fails on all ranks at once
  when they differ);
- measures its share of the windows not measured yet (:func:`shard`: round robin over
  the pending windows, the same on every rank) and flushes them as its own part files
  into the run's partial store, so a killed job resumes from them.

The first rank holds the run key's lock, decides what is pending, and writes the
finished run from all ranks' parts: the same key and the same arrays as a single
process would store (every window is computed independently of the others; bitwise
where the processes compute alike, else within float rounding).

The processes exchange only small Python objects (the key, a digest, lists of window
indices, timings), never tensors, so they talk over the gloo backend on every device:
it needs no GPU memory, works for ranks sharing a GPU, and its collectives honour a
timeout (:func:`coordination_timeout`), so a rank that dies or hangs does not keep the
others waiting forever. torchrun itself stops the other ranks when one fails
(SIGTERM; :func:`green_profiles.runs.signals.stop_signals_as_interrupt` lets them flush their finished
windows first).

:func:`launch` starts such a job from Python (``run_profile(..., processes=N)``, the
book's ``NPROC``): ``python -m torch.distributed.run --nproc-per-node N --standalone
-m green_profiles ...`` in a subprocess.

The data directory must be one file system shared by all ranks (on several nodes: a
network file system), since the first rank reads the others' parts from it.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

T = TypeVar("T")

# Collectives wait at most this long for the slowest rank (seconds). The longest wait is at the end of
# the measurement, for the rank with the most work: about one window's time when ranks are alike.
DEFAULT_TIMEOUT_S = 1800.0
TIMEOUT_VARIABLE = "GREEN_PROFILES_DIST_TIMEOUT"


class ShardedRunError(RuntimeError):
    """A sharded run launched by :func:`launch` failed; the message ends with its last lines of stderr."""


@dataclass(frozen=True)
class World:
    """Where this process stands in a torchrun job.

    Attributes:
        rank: this process' rank, ``0 .. world_size - 1`` over all nodes.
        world_size: number of processes in the job (1: a single process, not sharded).
        local_rank: rank on this node; picks the GPU (``cuda:local_rank``).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def sharded(self) -> bool:
        """True when more than one process shares the run."""
        return self.world_size > 1


def world_from_environment(environ: Mapping[str, str] | None = None) -> World:
    """This process' :class:`World` from torchrun's variables; a single process without them.

    Args:
        environ: the environment to read (default ``os.environ``).

    Raises:
        ValueError: ``RANK``, ``WORLD_SIZE`` or ``LOCAL_RANK`` set but not consistent integers.
    """
    environ = os.environ if environ is None else environ
    if "WORLD_SIZE" not in environ:
        return World()
    try:
        world_size = int(environ["WORLD_SIZE"])
        rank = int(environ.get("RANK", "0"))
        local_rank = int(environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ValueError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (as torchrun sets them), got "
                         f"{environ.get('RANK')!r}, {environ.get('WORLD_SIZE')!r}, "
                         f"{environ.get('LOCAL_RANK')!r}") from None
    if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
        raise ValueError(f"rank {rank} (local rank {local_rank}) does not fit a world of {world_size} processes")
    return World(rank=rank, world_size=world_size, local_rank=local_rank)


def shard(pending: Sequence[int], rank: int, world_size: int) -> list[int]:
    """The windows rank ``rank`` measures: every ``world_size``-th pending window, from its ``rank``-th.

    Round robin rather than contiguous blocks: shares differ by at most one window,
    and the windows of an interrupted run that are still pending (of any rank) are
    spread over all ranks again on resuming. Deterministic: every rank computes the
    same split from the same pending list, so the shares cover it exactly once.

    Args:
        pending: window indices still to measure, in order.
        rank, world_size: ``0 <= rank < world_size``.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside a world of {world_size} processes")
    return list(pending[rank::world_size])


def rank_device(spec: str | torch.device, world: World) -> torch.device:
    """The device of this rank: ``"auto"`` and ``"cuda"`` mean ``cuda:LOCAL_RANK`` when CUDA is
    available (``"auto"``: else the CPU); an explicit device (``"cpu"``, ``"cuda:1"``) is kept.

    Raises:
        ValueError: a local rank without a GPU of its own.
    """
    if isinstance(spec, torch.device):
        return spec
    if spec == "auto" and not torch.cuda.is_available():
        return torch.device("cpu")
    if spec not in ("auto", "cuda"):
        return torch.device(spec)
    count = torch.cuda.device_count()
    if world.local_rank >= count:
        raise ValueError(f"local rank {world.local_rank} needs cuda:{world.local_rank}, but {count} GPU(s) are "
                         "visible: start at most one process per GPU (--nproc-per-node), or name a device")
    return torch.device("cuda", world.local_rank)


def windows_digest(window_ids: np.ndarray) -> str:
    """SHA-256 of window token ids ``[n, L + 1]`` (shape and dtype included): equal on every rank
    exactly when every rank sampled the same windows."""
    ids = np.ascontiguousarray(window_ids)
    digest = hashlib.sha256(f"{ids.shape}{ids.dtype}".encode())
    digest.update(ids.tobytes())
    return digest.hexdigest()


def check_agreement(what: str, values_by_rank: Sequence[Any]) -> None:
    """Raise ``ValueError`` naming each rank's value when the ranks' values of ``what`` differ."""
    if len({repr(value) for value in values_by_rank}) > 1:
        listing = "; ".join(f"rank {rank}: {value}" for rank, value in enumerate(values_by_rank))
        raise ValueError(f"the ranks of this sharded run disagree on {what} ({listing}): they must run the same "
                         "code on the same data directory, text and weights")


def coordination_timeout(environ: Mapping[str, str] | None = None) -> float:
    """Seconds a collective waits for the other ranks: ``$GREEN_PROFILES_DIST_TIMEOUT``, default 1800."""
    environ = os.environ if environ is None else environ
    text = environ.get(TIMEOUT_VARIABLE)
    if text is None:
        return DEFAULT_TIMEOUT_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ValueError(f"{TIMEOUT_VARIABLE} must be a positive number of seconds, got {text!r}")
    return seconds


class Group:
    """The ranks of one sharded run, exchanging small Python objects over gloo (with a timeout)."""

    def __init__(self, world: World, handle: Any, timeout_s: float) -> None:
        self.world = world
        self._handle = handle  # None: torch.distributed's default group
        self._timeout = datetime.timedelta(seconds=timeout_s)

    @property
    def rank(self) -> int:
        """This process' rank."""
        return self.world.rank

    @property
    def world_size(self) -> int:
        """Number of ranks."""
        return self.world.world_size

    def broadcast(self, value: T) -> T:
        """Rank 0's ``value`` on every rank (the others' ``value`` is ignored)."""
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0, group=self._handle)
        return box[0]

    def all_gather(self, value: T) -> list[T]:
        """Every rank's ``value``, indexed by rank, on every rank."""
        import torch.distributed as dist

        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value, group=self._handle)
        return values

    def agree(self, what: str, value: Any) -> None:
        """Raise ``ValueError`` on every rank unless all ranks hold the same ``value`` of ``what``."""
        check_agreement(what, self.all_gather(value))

    def barrier(self) -> None:
        """Wait for every rank; after the timeout, rank 0 raises naming the ranks that did not come."""
        import torch.distributed as dist

        dist.monitored_barrier(group=self._handle, timeout=self._timeout, wait_all_ranks=True)


@contextlib.contextmanager
def process_group(world: World, timeout_s: float | None = None) -> Iterator[Group]:
    """The :class:`Group` of this torchrun job for the block, torn down after it.

    Initializes torch.distributed from torchrun's ``MASTER_ADDR``/``MASTER_PORT`` with
    the gloo backend; when the caller has already initialized it (with any backend),
    a gloo group over the same processes is made and removed instead, and the
    caller's default group is left alone.

    Args:
        world: this process' place (:func:`world_from_environment`).
        timeout_s: how long a collective waits (default :func:`coordination_timeout`).
    """
    import torch.distributed as dist

    seconds = coordination_timeout() if timeout_s is None else float(timeout_s)
    timeout = datetime.timedelta(seconds=seconds)
    owns_default = not dist.is_initialized()
    if owns_default:
        dist.init_process_group("gloo", init_method="env://", rank=world.rank, world_size=world.world_size,
                                timeout=timeout)
        handle = None
    else:
        if (dist.get_rank(), dist.get_world_size()) != (world.rank, world.world_size):
            raise ValueError(f"torch.distributed is initialized as rank {dist.get_rank()} of "
                             f"{dist.get_world_size()}, the environment says {world.rank} of {world.world_size}")
        handle = dist.new_group(backend="gloo", timeout=timeout)
    group = Group(world, handle, seconds)
    try:
        yield group
        # No rank leaves (and closes its connections) while another still receives the last message.
        group.barrier()
    finally:
        dist.destroy_process_group(None if owns_default else handle)


def torchrun_command(processes: int, arguments: Sequence[str], *, python: str | None = None) -> list[str]:
    """``python -m torch.distributed.run --nproc-per-node N --standalone -m green_profiles ARGS``.

    ``--standalone``: a rendezvous on this machine on a free port, so several launches
    may run at once. For several machines run torchrun yourself with ``--nnodes`` and
    ``--rdzv-endpoint`` (docs/running.md, "Sharded runs").

    Args:
        processes: processes on this machine, one per GPU where there are GPUs.
        arguments: the command line of :mod:`green_profiles.cli` (``["--data-dir", D, "run", ...]``).
        python: the interpreter (default: this one).
    """
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    return [python or sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
            "--standalone", "-m", "green_profiles", *arguments]


def launch(processes: int, arguments: Sequence[str], *, environ: Mapping[str, str] | None = None) -> None:
    """Run ``green-profiles ARGS`` as a torchrun job of ``processes`` processes on this machine and wait.

    The job's stderr (progress, warnings, errors) is relayed to this process' stderr
    as it comes; its stdout (the report) is discarded. The children import this very
    package (its directory goes first on ``PYTHONPATH``), so they run the same code.

    Raises:
        ShardedRunError: the job failed; the message ends with its last lines of stderr.
        KeyboardInterrupt: interrupted; the job was stopped first (its flushed windows stay).
    """
    environment = dict(os.environ if environ is None else environ)
    package_root = str(Path(__file__).resolve().parents[1])
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, environment.get("PYTHONPATH")]))
    command = torchrun_command(processes, arguments)
    tail: collections.deque[str] = collections.deque(maxlen=60)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environment)
    assert process.stderr is not None
    try:
        pending = ""
        for chunk in iter(lambda: process.stderr.read1(65536), b""):
            text = chunk.decode(errors="replace")
            sys.stderr.write(text)
            sys.stderr.flush()
            # Progress bars redraw with carriage returns: keep only whole lines for the error message.
            lines = (pending + text).replace("\r", "\n").split("\n")
            pending = lines.pop()
            tail.extend(line for line in lines if line.strip())
        status = process.wait()
    except BaseException:
        process.terminate()  # torchrun passes it on to its ranks, which flush what they finished
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        raise
    finally:
        process.stderr.close()
    if status != 0:
        raise ShardedRunError(f"the sharded run ({processes} processes) failed with exit status {status}: "
                              f"{' '.join(command)}\nits last lines of stderr:\n" + "\n".join(tail))
