"""What a training's log lines look like in an answer: no traceback frames, no server paths."""

from __future__ import annotations


def test_log_lines_lose_traceback_frames_and_absolute_paths():
    from microcalcai.server.public_text import scrub, scrub_lines

    lines = [
        "[2026-12-03 05:00:00,000] [123] [INFO] (microcalcai.server.hosted) - loading model tiny-a "
        "version 1 from /srv/mcai/ws/models/tiny-a/versions/1",
        "Traceback (most recent call last):",
        '  File "/srv/venv/lib/python3.11/site-packages/monailabel/interfaces/utils/app.py", line 132',
        "    result = instance.train(request)",
        "FileNotFoundError: [Errno 2] No such file or directory: '/srv/mcai/ws/models/tiny-a/model.pt'",
        "",
        "epoch 2/5",
    ]
    kept = scrub_lines(lines)
    assert kept == [
        "[2026-12-03 05:00:00,000] [123] [INFO] (microcalcai.server.hosted) - loading model tiny-a "
        "version 1 from …/1",
        "FileNotFoundError: [Errno 2] No such file or directory: '…/model.pt'",
        "epoch 2/5",
    ]
    assert scrub(r"C:\Users\me\ws\labels\final\P1.json and /tmp/") == "…/P1.json and …"
    # Not paths: ratios, dates, ROI text, relative names.
    for text in ("AUC 0.71/0.74", "2026/12/03", "labels/final/P1.json", "roi 96 px"):
        assert scrub(text) == text
