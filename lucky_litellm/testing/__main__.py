"""`python -m lucky_litellm.testing`: the fake upstream as a foreground process.

For proxy tests and demos that need the upstream in another process. Prints
`READY http://HOST:PORT/v1` once listening and serves until SIGTERM or SIGINT.

    python -m lucky_litellm.testing --port 0 --latency-ms 20 --fail-model gpt-4.1:503
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from .behavior import Behavior
from .fake_upstream import FakeUpstream


def _model_and_number(value: str) -> tuple[str, float]:
    model, sep, number = value.rpartition(":")
    if not sep or not model:
        raise argparse.ArgumentTypeError(f"expected NAME:NUMBER, got {value!r}")
    try:
        return model, float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME:NUMBER, got {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lucky_litellm.testing", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="latency of every answer")
    parser.add_argument(
        "--fail-model",
        type=_model_and_number,
        action="append",
        default=[],
        metavar="NAME:STATUS",
        help="answer model NAME with HTTP STATUS (repeatable)",
    )
    parser.add_argument(
        "--slow-model",
        type=_model_and_number,
        action="append",
        default=[],
        metavar="NAME:MS",
        help="answer model NAME after MS milliseconds (repeatable)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    latency = {model: ms for model, ms in args.slow_model}
    failing = {model: int(status) for model, status in args.fail_model}
    try:
        upstream = FakeUpstream(host=args.host, port=args.port, default=Behavior(latency_ms=args.latency_ms))
        for model in latency.keys() | failing.keys():
            ms = latency.get(model, args.latency_ms)
            upstream.script(model, Behavior(latency_ms=ms, status=failing.get(model, 200)))
    except ValueError as exc:
        parser.error(str(exc))

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with upstream:
        print(f"READY {upstream.base_url}", flush=True)
        while not stop.wait(0.5):  # a timed wait keeps the main thread responsive to signals
            pass
    print("STOPPED", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
