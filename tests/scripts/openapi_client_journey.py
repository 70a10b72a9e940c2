"""A journey through ocrd with nothing but a client generated from its OpenAPI document.

Usage: openapi_client_journey.py BASE_URL OPENAPI_JSON PAGE_IMAGE WORK_DIR

Generates the client with openapi-python-client into WORK_DIR, then registers, uploads the page
(the generated client sends the file first and the options after it), waits for the task and
downloads its text. Prints one JSON line: the task's status, the formats it recorded and the
text.
"""

import json
import pathlib
import subprocess
import sys
import time
import uuid

base, document, page, work = sys.argv[1:5]
work = pathlib.Path(work)
config = work / "generator.yaml"
# No formatter run after generating: ruff is not needed to use the client.
config.write_text("post_hooks: []\n")
subprocess.run(
    [
        "openapi-python-client", "generate", "--path", document, "--output-path",
        str(work / "ocrd_client"), "--meta", "none", "--config", str(config),
    ],
    check=True,
)
sys.path.insert(0, str(work))

from ocrd_client import Client  # noqa: E402
from ocrd_client.api.auth import register  # noqa: E402
from ocrd_client.api.tasks import create_task, get_task, result  # noqa: E402
from ocrd_client.models import FormatName, RegisterRequest, UploadForm  # noqa: E402
from ocrd_client.types import File  # noqa: E402

anonymous = Client(base_url=base, raise_on_unexpected_status=True)
registered = register.sync_detailed(
    client=anonymous,
    body=RegisterRequest(email=f"generated-{uuid.uuid4().hex}@example.com", password="a long enough passphrase"),
)
assert registered.status_code == 201, registered
cookies = dict(anonymous.get_httpx_client().cookies)
assert cookies, "registering set no session cookie"
client = Client(
    base_url=base,
    cookies=cookies,
    headers={"X-CSRF-Token": registered.parsed.csrf_token},
    raise_on_unexpected_status=True,
    timeout=60.0,
)

with open(page, "rb") as image:
    uploaded = create_task.sync_detailed(
        client=client,
        body=UploadForm(
            file=File(payload=image, file_name=pathlib.Path(page).name, mime_type="image/png"),
            formats="txt,json",
        ),
    )
assert uploaded.status_code == 202, uploaded
task = uploaded.parsed

deadline = time.monotonic() + 300
while task.status not in ("completed", "failed", "cancelled"):
    assert time.monotonic() < deadline, f"the task is still {task.status}"
    time.sleep(0.5)
    task = get_task.sync(client=client, id=task.id)

text = ""
if task.status == "completed":
    downloaded = result.sync_detailed(client=client, id=task.id, format_=FormatName.TXT, stream=True)
    assert downloaded.status_code == 200, downloaded
    text = downloaded.content.decode()

print(json.dumps({"status": task.status, "requested_formats": task.requested_formats, "text": text}))
