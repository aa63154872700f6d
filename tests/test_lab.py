"""`make lab`'s server: its URL answers, and its default kernel (pg-ml-kit) reaches the kit's database.

Starts scripts/lab.sh on a free port, as an attendee's `make lab` would (the database and .venv are
already provisioned by `make test`), talks to it over HTTP and the kernel websocket, then stops it.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import websocket

import pgmlkit

KIT_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def lab():
    port = free_port()
    env = {**os.environ, "KIT_LAB_PORT": str(port)}
    process = subprocess.Popen([str(KIT_ROOT / "scripts" / "lab.sh")], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    token = (KIT_ROOT / ".kit" / "lab-token")
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token.read_text().strip()}", timeout=2):
                    break
            except OSError:
                if process.poll() is not None:
                    pytest.fail("lab.sh exited early:\n" + process.stdout.read())
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not answer within 60 s")
        yield base, token.read_text().strip()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_lab_url_answers_and_the_kernel_connects_to_the_database(lab):
    base, token = lab
    with urllib.request.urlopen(f"{base}/lab?token={token}", timeout=10) as page:
        assert page.status == 200
    with urllib.request.urlopen(f"{base}/api/kernelspecs?token={token}", timeout=10) as response:
        specs = json.load(response)
    assert specs["default"] == "pg-ml-kit"

    request = urllib.request.Request(f"{base}/api/kernels?token={token}", method="POST",
                                     data=json.dumps({"name": "pg-ml-kit"}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        kernel_id = json.load(response)["id"]
    ws = websocket.create_connection(f"{base.replace('http', 'ws')}/api/kernels/{kernel_id}/channels?token={token}",
                                     timeout=60)
    try:
        msg_id = uuid.uuid4().hex
        code = ("import pgmlkit, sys\n"
                "row = pgmlkit.connect().execute(\"SELECT extname FROM pg_extension WHERE extname = 'plpython3u'\").fetchone()\n"
                "print(sys.version_info[:2], row[0])")
        ws.send(json.dumps({"header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test",
                                       "session": uuid.uuid4().hex, "version": "5.3"},
                            "parent_header": {}, "metadata": {}, "channel": "shell",
                            "content": {"code": code, "silent": False, "store_history": False,
                                        "user_expressions": {}, "allow_stdin": False}}))
        output, deadline = "", time.time() + 60
        while time.time() < deadline:
            message = json.loads(ws.recv())
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if message["msg_type"] == "stream":
                output += message["content"]["text"]
            elif message["msg_type"] == "error":
                pytest.fail("kernel error: " + message["content"]["evalue"])
            elif message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                break
        major, minor = pgmlkit.kit_settings()["PYTHON_MINOR"].split(".")
        assert output.strip() == f"({major}, {minor}) plpython3u"
    finally:
        ws.close()
