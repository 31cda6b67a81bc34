"""The modelyard model server: sentence embeddings for KServe, with the front separated from the device.

Processes (the way Hugging Face TEI, Infinity and Triton split them):
- the supervisor (this module): checks the settings, binds the port, starts the others, forwards
  SIGTERM and reports how they ended;
- one model owner (engine.py): holds the model on its device and runs every forward pass, batching
  across all fronts by text count and padded-token budget;
- `--workers` front processes (front.py, dispatch.py), by default one per CPU the pod may use: HTTP,
  validation and tokenization, sharing the listening socket; token ids go to the model owner through
  shared memory (channel.py), vectors come back the same way.
Metrics are prometheus_client's multiprocess mode: one `/metrics`, every process's series. The processes
name themselves (/proc/PID/comm, what `ps` and `top` show): model-owner, http-front-0, http-front-1, ...

On SIGTERM the fronts stop accepting connections and answer what they hold (anything new on an open
connection gets 503 + Retry-After); the model owner exits once every front has; the supervisor exits 0.
If any process dies otherwise, the supervisor stops the rest and exits 1, so the kubelet restarts the
container instead of leaving a server that cannot answer.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from .cache import ENTRY_OVERHEAD
from .stopping import STOP_SIGNALS

log = logging.getLogger("modelyard_server")

#: Shared-memory slots per front: jobs a front may have at the model owner at once. Six jobs of 12
#: texts (the CPU default) let a front hand over as many texts before it waits as four of 16 did; with
#: four, bench.py --overhead put the OpenAI route at 0.48 to 0.56 of the bare app (median 0.51 of five
#: runs), with six at 0.52 to 0.53 in three. A slot costs 50 KiB of shared memory on a CPU, 450 KiB on a GPU.
SLOTS = 6
#: (--max_batch_size, --max_batch_tokens) by device. On a CPU, one single-threaded pass per core
#: (--model_instances) with BERT run on its own tokens (encoder.RaggedBert): passes of 8, 16, 32 and 64
#: texts encoded 295, 326, 323 and 304 sentences/s (all-MiniLM-L6-v2 on 2 cores, medians of eight
#: bench.py runs), while a pass's time, which a request waits, doubles with each step. At 12 texts a pass
#: the server saturated as at 16 within the noise and its p99 at 80 % of saturation fell from 232 to 197 ms
#: (eight alternating rounds; 8 texts: 5 % lower saturation, near the throughput target, and 166 ms in
#: four; benchmarks/RESULTS.md has the figures). A GPU needs hundreds of texts a pass to be busy (a
#: 256-text fp16 pass was reported at 4.1 ms on an H100; not measured here). The token budget bounds activation memory.
BATCH_DEFAULTS = {"cpu": (12, 8192), "cuda": (256, 16384)}


def gpu_present() -> bool:
    """Whether this container was given an NVIDIA GPU (the device plugin mounts /dev/nvidiactl), without
    loading torch in the supervisor; CUDA_VISIBLE_DEVICES="" or -1 hides it, as it does from torch."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    return Path("/dev/nvidiactl").exists()


def cpu_limit() -> int:
    """CPUs this container may use: the cgroup quota (a pod's CPU limit), else the CPUs it may run on."""
    allowed = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError, ValueError):
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            return max(1, min(allowed, math.ceil(int(quota) / int(period))))
    with contextlib.suppress(OSError, ValueError):
        quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        if quota_us > 0:
            return max(1, min(allowed, math.ceil(quota_us / period_us)))
    return max(1, allowed)


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            what = {int: "a whole number", float: "a number"}.get(kind, kind.__name__)
            raise argparse.ArgumentTypeError(f"must be {what} (got {text!r})") from None
        if not value > 0 or math.isinf(value):
            finite = " and finite" if kind is float else ""
            raise argparse.ArgumentTypeError(f"must be more than 0{finite} (got {text})")
        return value

    return parse


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number (got {text!r})") from None
    if not value >= 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be 0 or more (got {text})")
    return value


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number (got {text!r})") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 1 (got {text})")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="modelyard-server", description=__doc__.splitlines()[0])
    parser.add_argument("--model_name", default="minilm", help="the name clients address (default: minilm)")
    parser.add_argument(
        "--model_dir",
        default=None,
        help="a sentence-transformers directory (default: the bundled all-MiniLM-L6-v2; in a cluster /mnt/models)",
    )
    parser.add_argument(
        "--verify_manifest",
        action="store_true",
        help="refuse to start unless the model directory is exactly what its manifest.json (written by "
        "modelyard model push) lists, file by file and sha256 by sha256",
    )
    parser.add_argument(
        "--manifest_public_key",
        default=None,
        metavar="BASE64_DER",
        help="with --verify_manifest: the signing key's public half (aws kms get-public-key --query PublicKey); "
        "refuse to start unless manifest.sig is its signature of manifest.json",
    )
    parser.add_argument("--http_port", type=int, default=8080)
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0, as in a pod)")
    parser.add_argument(
        "--workers", type=_positive(int), default=None, help="front processes (default: the pod's CPU limit)"
    )
    parser.add_argument(
        "--max_batch_size",
        type=_positive(int),
        default=None,
        help=f"texts per forward pass (default: {BATCH_DEFAULTS['cpu'][0]} on a CPU, "
        f"{BATCH_DEFAULTS['cuda'][0]} on a GPU)",
    )
    parser.add_argument(
        "--max_batch_tokens",
        type=_positive(int),
        default=None,
        help="padded tokens per forward pass (texts x longest text); at least the model's max_seq_length "
        f"(default: {BATCH_DEFAULTS['cpu'][1]} on a CPU, {BATCH_DEFAULTS['cuda'][1]} on a GPU)",
    )
    parser.add_argument(
        "--model_instances",
        type=_positive(int),
        default=None,
        help="forward passes at once, each on its own thread over the one copy of the model "
        "(default: 1 on a GPU; on a CPU, one per CPU, each single-threaded)",
    )
    parser.add_argument("--max_wait_ms", type=_non_negative, default=2.0, help="wait for company when idle")
    parser.add_argument(
        "--max_queue",
        type=_positive(int),
        default=None,
        help="texts waiting before requests get 503, shared among the fronts (default: workers x the larger of "
        f"--max_inputs and 2 x --max_batch_size; with --latency_objective_ms, the ceiling, {CEILING} times that)",
    )
    parser.add_argument(
        "--latency_objective_ms",
        type=_positive(float),
        default=None,
        help="admit what the measured pace answers within this latency (the model's p99 objective), refusing "
        "the rest with 503, instead of a fixed count (default: unset, the --max_queue count)",
    )
    parser.add_argument(
        "--low_priority_share",
        type=_share,
        default=0.5,
        help="share of the admission bound requests marked x-modelyard-priority: low may fill; beyond it they get "
        "429 (default 0.5)",
    )
    parser.add_argument(
        "--cache_mb",
        type=_non_negative,
        default=64.0,
        help="MiB of the model owner's embedding cache, shared by every front (default 64; 0: no cache)",
    )
    parser.add_argument("--max_inputs", type=_positive(int), default=64, help="texts per request")
    parser.add_argument("--max_chars", type=_positive(int), default=8192, help="characters per text")
    parser.add_argument("--grace_period", type=_positive(int), default=30, help="seconds to drain on SIGTERM")
    parser.add_argument(
        "--keep_alive_timeout",
        type=_positive(int),
        default=65,
        help="seconds an idle HTTP connection is kept open (default above an AWS load balancer's 60 s idle timeout)",
    )
    parser.add_argument(
        "--read_timeout",
        type=_positive(float),
        default=30.0,
        help="seconds a request's headers and body may take to arrive, from the connection's opening (its first "
        "request) or the request's first byte (later ones); past it, 408 and the connection closes (default 30)",
    )
    parser.add_argument(
        "--max_connections",
        type=_positive(int),
        default=1024,
        help="open connections per front; beyond it the quietest connection with no request being answered is "
        "closed, or the new one gets 503 when all are busy (default 1024)",
    )
    parser.add_argument(
        "--model_version", default="", help="the version served (the catalog's), sent with the drift tap's samples"
    )
    parser.add_argument(
        "--tap_url",
        default=None,
        help="the drift worker's samples endpoint (http://HOST:PORT/v1/samples); unset: no samples leave the pod "
        "(the input histograms on /metrics are always kept)",
    )
    parser.add_argument(
        "--tap_share", type=_share, default=0.01, help="share of answered texts the tap samples, (0, 1] (default 0.01)"
    )
    parser.add_argument(
        "--tap_buffer",
        type=_positive(int),
        default=1024,
        help="samples a front holds for the worker; beyond it they are dropped and counted (default 1024)",
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    parser.add_argument("--constant_encoder", action="store_true", help=argparse.SUPPRESS)  # benchmarks only
    return parser.parse_args(argv)


def batching_for_device(args: argparse.Namespace, cpus: int) -> tuple[str, int | None]:
    """The device the model will run on (--device, else a GPU when the container has one) and the torch
    threads of each pass (None: torch's default); batch settings left unset take that device's defaults.
    On a CPU, passes run side by side, one per CPU, single-threaded: on 2 cores, two one-thread passes
    encode 1.2 to 2.2 times the texts of one two-thread pass (bench.py (a)), small batches gaining most."""
    device: str = args.device or ("cuda" if gpu_present() else "cpu")
    size, tokens = BATCH_DEFAULTS[device]
    args.max_batch_size = args.max_batch_size or size
    args.max_batch_tokens = args.max_batch_tokens or tokens
    if device == "cuda":
        args.model_instances = args.model_instances or 1
        return device, None
    args.model_instances = args.model_instances or cpus
    return device, max(1, cpus // args.model_instances)


#: What `ps`, `top` and /proc/PID/comm call the model owner and front I (Linux keeps 15 characters).
MODEL_PROCESS = "model-owner"
FRONT_PROCESS = "http-front-"


def name_process(name: str) -> None:
    """This process's name as `ps` and `top` show it, so an operator in the pod (and bench.py's CPU
    accounting) can tell the model owner from the fronts; a no-op where /proc is not Linux's."""
    with contextlib.suppress(OSError), open("/proc/self/comm", "w") as comm:
        comm.write(name[:15])


class SettingsError(Exception):
    """Settings that cannot work together; the message says which and what would."""


#: With a latency objective, the fixed queue bound is only a ceiling (memory): this many times the count default.
CEILING = 16


def check(args: argparse.Namespace, workers: int, max_seq_length: int) -> int:
    """The queue each front may hold; refuses settings that would answer some valid request 503 forever."""
    if args.max_queue is None:
        args.max_queue = workers * max(args.max_inputs, 2 * args.max_batch_size)
        if args.latency_objective_ms is not None:
            args.max_queue *= CEILING
    per_front = math.ceil(args.max_queue / workers)
    if args.max_inputs > per_front:
        raise SettingsError(
            f"--max_inputs {args.max_inputs} is more than a front can queue (--max_queue {args.max_queue} over "
            f"{workers} workers = {per_front} texts each), so a full-size request would always get 503; "
            f"raise --max_queue to at least {args.max_inputs * workers} or lower --max_inputs to {per_front}"
        )
    if args.max_batch_tokens < max_seq_length:
        raise SettingsError(
            f"--max_batch_tokens {args.max_batch_tokens} cannot hold one text of the model's max_seq_length "
            f"({max_seq_length} tokens); use at least {max_seq_length}"
        )
    return per_front


def tap_settings(args: argparse.Namespace, model_dir: Path) -> Any:
    """The drift tap's settings (tap.TapSettings), or None without --tap_url; a bad URL is a SettingsError."""
    if args.tap_url is None:
        return None
    from .tap import TapSettings, TapUrlError, parse_url, reference_in

    try:
        parse_url(args.tap_url)
    except TapUrlError as exc:
        raise SettingsError(f"--tap_url {exc}") from None
    if not args.model_version:
        raise SettingsError("--tap_url needs --model_version: the worker keeps each version's samples apart")
    return TapSettings(args.tap_url, args.tap_share, args.model_version, reference_in(model_dir), args.tap_buffer)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(processName)s %(name)s %(message)s")
    from .tokenizer import ModelDirError, model_info

    model_dir = Path(args.model_dir) if args.model_dir else None
    if model_dir is None:
        from .tokenizer import bundled_model_dir

        model_dir = bundled_model_dir()
    workers = args.workers or cpu_limit()
    device, threads = batching_for_device(args, cpu_limit())
    try:
        if args.verify_manifest:
            from .manifest import MANIFEST, public_key, verify

            key = None
            if args.manifest_public_key is not None:
                try:
                    key = public_key(args.manifest_public_key)
                except ValueError as exc:
                    raise SettingsError(f"--manifest_public_key {exc}") from None
            verified = verify(model_dir, args.model_name, key)
            signed = " and its signature" if key is not None else ""
            logging.getLogger("modelyard_server").info("%d files verified against %s%s", verified, MANIFEST, signed)
        elif args.manifest_public_key is not None:
            raise SettingsError("--manifest_public_key needs --verify_manifest (the signature is of the manifest)")
        info = model_info(model_dir)
        queue_given = args.max_queue is not None
        per_front = check(args, workers, info.max_seq_length)
        if 0 < args.cache_mb * 2**20 < (row := info.dimensions * 4 + ENTRY_OVERHEAD):
            raise SettingsError(f"--cache_mb {args.cache_mb:g} cannot hold one vector ({row} bytes); use 0 or more")
        tap = tap_settings(args, model_dir)
    except (ModelDirError, SettingsError) as exc:
        print(f"modelyard-server: {exc}", file=sys.stderr)
        return 2

    # prometheus_client reads this when it is first imported: every process below writes its own files.
    metrics_dir = tempfile.mkdtemp(prefix="modelyard-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    from .channel import Layout, OwnerLoad, SlotBlock
    from .dispatch import Dispatcher, DispatchSettings
    from .engine import EngineSettings, engine_main
    from .front import FrontSettings, Guard, front_main
    from .metrics import InputSignals
    from .tokenizer import ConstantTokenizer, TextTokenizer
    from .validation import Limits

    try:
        listener = socket.create_server((args.host, args.http_port), backlog=4096)
    except OSError as exc:
        print(f"modelyard-server: cannot listen on {args.host}:{args.http_port}: {exc.strerror}", file=sys.stderr)
        shutil.rmtree(metrics_dir, ignore_errors=True)
        return 2
    layout = Layout(SLOTS, args.max_batch_size, args.max_batch_tokens, info.dimensions)
    blocks = [SlotBlock(layout) for _ in range(workers)]
    owner_load = OwnerLoad()
    pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET) for _ in range(workers)]
    limits = Limits(max_inputs=args.max_inputs, max_chars=args.max_chars)
    front_settings = FrontSettings(
        args.model_name,
        limits,
        body_limit=args.max_inputs * (args.max_chars * 4 + 64) + 4096,
        dimensions=info.dimensions,
        guard=Guard(args.read_timeout, args.max_connections),
        tap=tap,
        max_seq_length=info.max_seq_length,
    )
    dispatch_settings = DispatchSettings(
        args.model_name,
        args.max_batch_size,
        args.max_batch_tokens,
        per_front,
        latency_objective=None if args.latency_objective_ms is None else args.latency_objective_ms / 1000,
        low_priority_share=args.low_priority_share,
        # Until the model's pace is measured: the count default, not the ceiling it is raised to.
        start_capacity=None if queue_given or args.latency_objective_ms is None else per_front // CEILING,
    )
    engine_settings = EngineSettings(
        args.model_name,
        model_dir,
        info.dimensions,
        args.max_batch_size,
        args.max_batch_tokens,
        args.max_wait_ms,
        constant=args.constant_encoder,
        device=args.device,
        instances=args.model_instances,
        threads=threads,
        cache_bytes=int(args.cache_mb * 2**20),
    )

    stopping = False
    fronts: list[Any] = []

    def on_signal(sig: int, _frame: Any) -> None:
        nonlocal stopping
        if not stopping:
            log.info("signal %s: draining %d fronts", sig, len(fronts))
        stopping = True
        for p in fronts:
            if p.pid and p.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    ctx = multiprocessing.get_context("fork")

    def engine_entry() -> None:
        name_process(MODEL_PROCESS)
        listener.close()
        for _, front_end in pairs:
            front_end.close()
        engine_main(engine_settings, blocks, [engine_end for engine_end, _ in pairs], owner_load)

    def front_entry(i: int) -> None:
        name_process(f"{FRONT_PROCESS}{i}")
        for j, (engine_end, front_end) in enumerate(pairs):
            engine_end.close()
            if j != i:
                front_end.close()
        # The tokenizer is loaded here, after the fork: its thread pool does not survive one.
        tokenizer = ConstantTokenizer() if args.constant_encoder else TextTokenizer(model_dir, info.max_seq_length)
        signals = InputSignals(args.model_name, info.max_seq_length, tokenizer.unknown_id)
        dispatcher = Dispatcher(dispatch_settings, tokenizer, blocks[i], pairs[i][1], signals, owner_load)
        front_main(i, front_settings, dispatcher, listener, args.grace_period, args.keep_alive_timeout)

    # SIGTERM and SIGINT are held back while the children start. Each child lets them in once its own
    # handlers are set (until then it has this process's, and a SIGTERM that came in between was lost:
    # the server never exited), and this process once every child is known to pass them on to.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        engine = ctx.Process(target=engine_entry, name="model")
        engine.start()
        for i in range(workers):
            p = ctx.Process(target=front_entry, args=(i,), name=f"front-{i}")
            p.start()
            fronts.append(p)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    listener.close()
    for engine_end, front_end in pairs:
        engine_end.close()
        front_end.close()
    log.info(
        "listening on %s:%d: %d fronts, model %s from %s on %s, %d passes at once "
        "(batches of %d texts / %d tokens, %s; cache %g MiB); requests read within %g s, %d connections a front; %s",
        args.host,
        args.http_port,
        workers,
        args.model_name,
        model_dir,
        device if args.device else f"{device} (found)",
        args.model_instances,
        args.max_batch_size,
        args.max_batch_tokens,
        f"queue {args.max_queue} texts"
        if args.latency_objective_ms is None
        else f"admitting what is answered within {args.latency_objective_ms:g} ms (at most {args.max_queue} texts)",
        args.cache_mb,
        args.read_timeout,
        args.max_connections,
        "no drift tap"
        if tap is None
        else f"drift tap: {tap.share:g} of texts to {tap.url}"
        + ("" if tap.reference else " (no drift_reference.npz in the model directory)"),
    )

    failed = False
    try:
        from prometheus_client import multiprocess

        running = {p.sentinel: p for p in [engine, *fronts]}
        while running:
            for sentinel in wait(list(running)):
                p = running.pop(sentinel)  # type: ignore[call-overload]
                p.join()
                with contextlib.suppress(OSError):
                    multiprocess.mark_process_dead(p.pid)
                if p.exitcode != 0 or not stopping:
                    what = "the model process" if p is engine else p.name
                    log.error("%s exited with %s%s", what, p.exitcode, " while draining" if stopping else "")
                    failed = True
                    on_signal(signal.SIGTERM, None)
            if engine.sentinel in running and all(f.exitcode is not None for f in fronts):
                engine.join(timeout=args.grace_period)  # it exits once every front has closed its socket
                if engine.exitcode is None:
                    log.error("the model process did not exit after the fronts; killing it")
                    engine.kill()
                    failed = True
    finally:
        for block in blocks:
            block.close()
            with contextlib.suppress(FileNotFoundError):
                block.unlink()
        owner_load.close()
        with contextlib.suppress(FileNotFoundError):
            owner_load.unlink()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    if failed:
        return 1
    log.info("drained, exiting")
    return 0
