"""Run inside a loopback-only network namespace: a real Orthanc, the server on its DICOMweb, a client.

Usage: unshare -n -- sh -c 'ip link set lo up && python dicomweb_probe.py OUT_DIR'
Writes OUT_DIR/result.json with what the client saw; the test asserts on it. Orthanc cannot
bind to loopback only, hence the namespace: nothing outside this machine can reach it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import traceback
import urllib.request
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

ORTHANC_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


def start_orthanc(root: Path) -> tuple[subprocess.Popen, str]:
    config = {
        "Name": "microcalcai-test",
        "HttpPort": 8042,
        "DicomServerEnabled": False,
        "RemoteAccessAllowed": True,
        "AuthenticationEnabled": False,
        "StorageDirectory": str(root / "storage"),
        "IndexDirectory": str(root / "index"),
        "Plugins": [ORTHANC_PLUGIN],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    (root / "orthanc.json").write_text(json.dumps(config))
    log = open(root / "orthanc.log", "wb")
    process = subprocess.Popen(["Orthanc", str(root / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    url = "http://127.0.0.1:8042"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{url}/system", timeout=2).read()
            return process, url
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("Orthanc did not start; see orthanc.log")


def main(out: Path) -> dict:
    import requests
    from server_helpers import ROI_SIZE, host_tiny_models, label_part, write_studies

    from microcalcai.server.launch import LocalServer

    out.mkdir(parents=True, exist_ok=True)
    files = out / "files"
    write_studies(files, None)
    orthanc, url = start_orthanc(out)
    result: dict = {}
    try:
        uploaded = []
        for path in sorted(files.glob("P[01]_*.dcm")):
            answer = requests.post(f"{url}/instances", data=path.read_bytes(), timeout=30)
            answer.raise_for_status()
            uploaded.append(path.stem)
        result["uploaded"] = uploaded
        workspace = out / "workspace"
        host_tiny_models(workspace, out / "models")
        with LocalServer(f"{url}/dicom-web", workspace, env={"OMP_NUM_THREADS": "2"}) as server:
            series = requests.get(f"{url}/dicom-web/series", timeout=30).json()
            result["ids"] = sorted(s["0020000E"]["Value"][0] for s in series)
            first = requests.post(f"{server.url}/activelearning/first", json={}, timeout=120).json()
            result["first"] = first
            image = first["id"]
            infer = requests.post(
                f"{server.url}/infer/ensemble",
                params={"image": image, "output": "json"},
                data={"params": json.dumps({"roi": {"x": 120, "y": 150, "size": ROI_SIZE}})},
                files={"_": ("", b"")},
                timeout=120,
            )
            result["infer_status"] = infer.status_code
            result["infer"] = infer.json()
            label = {"roi": {"x": 120, "y": 150, "size": ROI_SIZE}, "label": "malignant"}
            saved = requests.put(
                f"{server.url}/datastore/label",
                params={"image": image, "tag": "final"},
                files=label_part(label),
                timeout=60,
            )
            result["save_status"] = saved.status_code
            result["saved"] = saved.json()
            result["unknown_status"] = requests.post(
                f"{server.url}/infer/ensemble",
                params={"image": "1.2.3.4.5", "output": "json"},
                data={"params": json.dumps({"roi": {"x": 1, "y": 1}})},
                files={"_": ("", b"")},
                timeout=60,
            ).status_code
            stored = requests.post(
                f"{server.url}/infer/ensemble",
                params={"image": image, "output": "json"},
                data={
                    "params": json.dumps(
                        {
                            "roi": {"x": 120, "y": 150, "size": ROI_SIZE},
                            "saliency": "gradcam",
                            "dicom_out": True,
                        }
                    )
                },
                files={"_": ("", b"")},
                timeout=180,
            )
            result["dicom_out_status"] = stored.status_code
            result["dicom_out"] = stored.json()
            result["label_sr"] = server_label_sr(server)
            result["results_before_restart"] = results_in_orthanc(url, out / "retrieved")
            server.restart()
            result["results_after_restart"] = results_in_orthanc(url, out / "retrieved-again")
            result["ids_after_restart"] = requests.get(
                f"{server.url}/datastore/", params={"output": "all"}, timeout=60
            ).json()
    except Exception:
        result["error"] = traceback.format_exc()
    finally:
        orthanc.terminate()
        orthanc.wait(10)
    (out / "result.json").write_text(json.dumps(result, indent=2))
    return result


def server_label_sr(server) -> dict:
    """What the label API saved, read from the server's cache (it survives a restart there too)."""
    import requests

    info = requests.get(f"{server.url}/datastore/", params={"output": "all"}, timeout=60).json()
    return {k: v.get("labels", {}) for k, v in info["objects"].items() if v.get("labels")}


def results_in_orthanc(url: str, scratch: Path) -> list[dict]:
    """QIDO-RS for every SR and SEG series, then each instance fetched by WADO-RS and read back."""
    import highdicom as hd
    import requests
    from dicomweb_client.api import DICOMwebClient

    from microcalcai.dicom_out.readback import read_report

    client = DICOMwebClient(f"{url}/dicom-web")
    found = []
    for modality in ("SR", "SEG"):
        series = requests.get(f"{url}/dicom-web/series", params={"Modality": modality}, timeout=30).json()
        for item in series:
            study, uid = item["0020000D"]["Value"][0], item["0020000E"]["Value"][0]
            for instance in client.search_for_instances(study, uid):
                sop = instance["00080018"]["Value"][0]
                dataset = client.retrieve_instance(study, uid, sop)
                entry = {"modality": modality, "study": study, "series": uid, "sop": sop}
                if modality == "SR":
                    entry["report"] = read_report(dataset)
                else:
                    scratch.mkdir(parents=True, exist_ok=True)
                    dataset.save_as(scratch / f"{sop}.dcm", write_like_original=False)
                    seg = hd.seg.segread(scratch / f"{sop}.dcm")
                    entry["shape"] = list(seg.pixel_array.shape)
                    entry["source"] = [list(t) for t in seg.get_source_image_uids()]
                found.append(entry)
    return found


if __name__ == "__main__":
    main(Path(sys.argv[1]))
