"""The report in a real headless browser (Debian's chromium over the DevTools protocol): it loads from
disk with no failed requests, no request leaving the machine, no console errors, every image decoded;
a screenshot of the first screen is kept (and copied to $OUT when set)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path


async def _devtools(ws_url: str, page_url: str) -> tuple[list[dict], dict, bytes]:
    import websockets

    events: list[dict] = []
    ids = itertools.count(1)
    async with websockets.connect(ws_url, max_size=None) as ws:
        async def call(method: str, **params) -> dict:
            i = next(ids)
            await ws.send(json.dumps({"id": i, "method": method, "params": params}))
            while True:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 60))
                if msg.get("id") == i:
                    assert "error" not in msg, msg
                    return msg["result"]
                events.append(msg)

        for domain in ("Page", "Network", "Runtime", "Log"):
            await call(f"{domain}.enable")
        await call("Page.navigate", url=page_url)
        while not any(e.get("method") == "Page.loadEventFired" for e in events):
            events.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))
        state = await call("Runtime.evaluate", returnByValue=True, expression=(
            "({images: document.images.length,"
            " broken: Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).length,"
            " audio: document.querySelectorAll('audio').length, title: document.title,"
            " sections: Array.from(document.querySelectorAll('section')).map(s => s.id)})"))
        shot = await call("Page.captureScreenshot", format="png")
    return events, state["result"]["value"], base64.b64decode(shot["data"])


def _load(chromium: str, page: Path, profile: Path, wait_for) -> tuple[list[dict], dict, bytes, str]:
    proc = subprocess.Popen([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             "--disable-extensions", "--disable-background-networking", "--enable-logging=stderr",
                             "--v=0", f"--user-data-dir={profile}", "--remote-debugging-port=0",
                             "--window-size=1280,900", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        port = wait_for(profile / "DevToolsActivePort").splitlines()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            targets = json.load(r)
        ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        events, state, png = asyncio.run(_devtools(ws_url, page.as_uri()))
    finally:
        proc.terminate()
        try:
            _, stderr = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
    return events, state, png, stderr


def test_the_report_loads_in_headless_chromium_without_errors(pipeline_home, chromium, wait_for_file, tmp_path):
    page = Path(pipeline_home["diffusion"]["report"])  # shapes@v1 with its two models
    events, state, png, stderr = _load(chromium, page, tmp_path / "profile", wait_for_file)
    by = lambda m: [e["params"] for e in events if e.get("method") == m]  # noqa: E731
    assert by("Network.loadingFailed") == []
    bad_status = [r["response"]["url"][:80] for r in by("Network.responseReceived")
                  if r["response"].get("status", 200) >= 400]
    assert bad_status == []
    schemes = {r["request"]["url"].split(":", 1)[0] for r in by("Network.requestWillBeSent")}
    assert schemes <= {"file", "data", "about"}, schemes  # nothing leaves the machine
    console = [c for c in by("Runtime.consoleAPICalled") if c["type"] in ("error", "assert")]
    assert console == [] and by("Runtime.exceptionThrown") == []
    assert [e["entry"] for e in by("Log.entryAdded") if e["entry"]["level"] == "error"] == []
    assert ":CONSOLE(" not in stderr, stderr[-2000:]  # chromium's own log of console messages
    assert state["images"] > 10 and state["broken"] == 0, state
    assert {"card", "scores", "kept", "dropped", "borderline", "duplicates", "models"} <= set(state["sections"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    shot = tmp_path / "report-first-screen.png"
    shot.write_bytes(png)
    from PIL import Image

    with Image.open(shot) as img:
        assert img.size[0] >= 1000
    if os.environ.get("OUT"):
        shutil.copy(shot, Path(os.environ["OUT"]) / shot.name)
