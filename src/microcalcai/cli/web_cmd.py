"""`microcalcai web`: MicrocalcAI in the browser (a trame-slicer page over the Slicer module's Logic).

Serves a page with a slice view of a mammogram and the MicrocalcAI panel: open an image (upload
or the server's datastore), window/level presets, zoom, a point or ROI box, Classify (per model
and ensemble, with the saliency overlay), labels, Next sample and training. It talks to a
running `microcalcai serve` at --server. Binds 127.0.0.1 unless --host says otherwise.
The page asks for the annotator's name once (unless --annotator gives it) and stores it with
every label.

Without --sessions, one process holds one scene shared by every tab. With --sessions N, the
address serves wslink's session launcher: each browser tab gets its own page process (its own
scene) on one of the N ports after --port, stopped when its tab closes or after --idle-minutes
without use; a tab beyond N is told that every session is in use (docs/web.md).
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "web",
        help="serve the MicrocalcAI web page (trame-slicer) for a running server",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--server",
        required=True,
        metavar="URL",
        help="address of the MicrocalcAI server (`microcalcai serve`), e.g. http://127.0.0.1:8000",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind the page to (default 127.0.0.1: this machine only)",
    )
    parser.add_argument("--port", type=int, default=8080, help="port of the page (default 8080)")
    parser.add_argument(
        "--annotator",
        default="",
        metavar="NAME",
        help="name stored with every label saved from this page (default: the page asks for it)",
    )
    parser.add_argument(
        "--sessions",
        type=int,
        default=0,
        metavar="N",
        help="a page process per browser tab, at most N at once, on ports --port+1 .. --port+N "
        "(default 0: one page shared by every tab)",
    )
    parser.add_argument(
        "--idle-minutes",
        type=float,
        default=30.0,
        metavar="M",
        help="with --sessions: a session's page stops after M minutes without use (default 30)",
    )
    parser.add_argument(
        "--tab-close-s",
        type=int,
        default=30,
        metavar="S",
        help="with --sessions: a session's page stops S seconds after its tab closed (default 30)",
    )
    parser.add_argument(
        "--log-dir", default=None, metavar="DIR", help="with --sessions: the launcher's and pages' logs"
    )
    # Set by the session launcher for each page process (wslink's names, which trame reads too).
    parser.add_argument("--timeout", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--authKey", default=None, help=argparse.SUPPRESS)
    parser.set_defaults(func=run)


def run(args) -> int:
    from microcalcai.errors import InputError

    if not 1 <= args.port <= 65535:
        raise InputError(f"--port {args.port}: give a port from 1 to 65535")
    if not 0 <= args.sessions <= 64 or args.port + args.sessions > 65535:
        raise InputError(f"--sessions {args.sessions}: give 0 (one shared page) to 64 sessions")
    if args.idle_minutes <= 0 or args.tab_close_s < 1:
        raise InputError("--idle-minutes and --tab-close-s must be positive")
    try:
        from microcalcai_logic.client import normalise_url
        from microcalcai_logic.errors import LogicError
    except ImportError:
        raise InputError(
            "the MicrocalcAI Logic package is not installed: pip install -e MicrocalcAI/Logic"
        ) from None
    try:
        url = normalise_url(args.server)
    except LogicError as error:
        raise InputError(f"--server: {error}") from None
    try:
        from microcalcai.web.app import MicrocalcWebApp
    except ImportError as error:
        raise InputError(
            f"the web page needs trame-slicer ({error}): pip install 'trame-slicer[standalone]==2.0.0'"
        ) from None
    import logging

    for name in ("trame_server", "trame_client", "trame_rca", "wslink", "aiohttp.access"):
        logging.getLogger(name).setLevel(logging.WARNING)  # their INFO lines trace every state change
    if args.sessions:
        return _run_sessions(args, url)
    print(f"MicrocalcAI web page on http://{args.host}:{args.port}/ (server {url})", flush=True)
    # A page the session launcher started (--timeout set) also stops after idle minutes.
    idle = args.idle_minutes if args.timeout else None
    app = MicrocalcWebApp(url, annotator=args.annotator, idle_minutes=idle)
    app.start(host=args.host, port=args.port, timeout=args.timeout)
    return 0


def _run_sessions(args, url: str) -> int:
    from pathlib import Path

    from microcalcai.errors import InputError
    from microcalcai.server.launch import port_is_free
    from microcalcai.web.sessions import run_launcher

    taken = [p for p in range(args.port, args.port + args.sessions + 1) if not port_is_free(args.host, p)]
    if taken:
        raise InputError(
            f"--sessions {args.sessions} needs ports {args.port} to {args.port + args.sessions} on "
            f"{args.host}; {', '.join(map(str, taken))} in use: choose another --port"
        )
    print(
        f"MicrocalcAI web page on http://{args.host}:{args.port}/ (server {url}; "
        f"a page process per tab, at most {args.sessions})",
        flush=True,
    )
    run_launcher(
        url,
        args.host,
        args.port,
        args.sessions,
        args.idle_minutes,
        args.tab_close_s,
        Path(args.log_dir) if args.log_dir else None,
    )
    return 0
