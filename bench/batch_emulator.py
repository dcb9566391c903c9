"""The emulator's Batch API under a full-size file: a ~200 MB, 50,000-line upload streamed in,
the batch answered, its output streamed back; prints the times and the emulator's peak RSS.

    python -m bench.batch_emulator [--lines 50000] [--text-chars 3900]

Standard library only (see bench/__init__.py): the upload is a chunked multipart body written
from the file as it is read, so neither side holds the file in memory.
"""

from __future__ import annotations

import argparse
import http.client
import json
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.emulator_process import Emulator

_BOUNDARY = "benchbatchboundary"
_NO_WAIT = ("validating=0", "in_progress=0", "finalizing=0")


def write_file(path: Path, lines: int, text_chars: int) -> int:
    with path.open("w") as out:
        for i in range(lines):
            text = (f"comment {i}: you are an idiot, and here are more words " * 100)[:text_chars]
            body = {"model": "omni-moderation-latest", "input": text}
            line = {"custom_id": f"r{i}", "method": "POST", "url": "/v1/moderations", "body": body}
            out.write(json.dumps(line) + "\n")
    return path.stat().st_size


def _multipart(path: Path) -> Iterator[bytes]:
    yield (
        f'--{_BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        f'--{_BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"'
        "\r\nContent-Type: application/jsonl\r\n\r\n"
    ).encode()
    with path.open("rb") as data:
        while block := data.read(1 << 20):
            yield block
    yield f"\r\n--{_BOUNDARY}--\r\n".encode()


def _call(base_url: str, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base_url + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=600) as answer:
        return json.load(answer)


def upload(base_url: str, path: Path) -> Any:
    url = urllib.parse.urlsplit(base_url)
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=600)
    headers = {"Content-Type": f"multipart/form-data; boundary={_BOUNDARY}"}
    connection.request("POST", url.path + "/files", _multipart(path), headers, encode_chunked=True)
    answer = connection.getresponse()
    found = json.load(answer)
    connection.close()
    return found


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--text-chars", type=int, default=3_900)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as folder:
        path = Path(folder) / "requests.jsonl"
        size = write_file(path, args.lines, args.text_chars)
        phases = [option for phase in _NO_WAIT for option in ("--batch-phase", phase)]
        with Emulator(phases, log_dir=Path(folder)) as emulator:
            url = emulator.base_url
            idle_mb = peak_rss_mb(emulator.pid)
            started = time.perf_counter()
            uploaded = upload(url, path)
            upload_s = time.perf_counter() - started
            upload_mb = peak_rss_mb(emulator.pid)
            started = time.perf_counter()
            batch = _call(
                url,
                "POST",
                "/batches",
                {
                    "input_file_id": uploaded["id"],
                    "endpoint": "/v1/moderations",
                    "completion_window": "24h",
                },
            )
            while batch["status"] not in ("completed", "failed", "expired"):
                time.sleep(0.5)  # a bench polls like a client; tests never sleep
                batch = _call(url, "GET", f"/batches/{batch['id']}")
            batch_s = time.perf_counter() - started
            started = time.perf_counter()
            read = 0
            with urllib.request.urlopen(f"{url}/files/{batch['output_file_id']}/content") as out:
                while block := out.read(1 << 20):
                    read += len(block)
            download_s = time.perf_counter() - started
            done_mb = peak_rss_mb(emulator.pid)
    print(
        f"file: {args.lines} lines, {size / 1e6:.1f} MB; batch {batch['status']}, "
        f"{batch['request_counts']}"
    )
    print(
        f"upload {upload_s:.1f} s ({size / 1e6 / upload_s:.0f} MB/s); answered in {batch_s:.1f} s "
        f"({args.lines / batch_s:.0f} lines/s); output {read / 1e6:.1f} MB in {download_s:.1f} s"
    )
    print(
        f"emulator peak RSS: {idle_mb:.0f} MB idle, {upload_mb:.0f} MB after the upload, "
        f"{done_mb:.0f} MB at the end"
    )


if __name__ == "__main__":
    main()
