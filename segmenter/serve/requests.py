"""What a request brings and may take: the server's bounds (ServeSettings), its image bytes (raw or a multipart
file field), the refusal answered as a one-line JSON error, and the memory budget requests share in a replica.
Nothing here imports Ray: the command reads its defaults from ServeSettings before Ray is needed."""
import asyncio
import email.message
from dataclasses import dataclass


@dataclass(frozen=True)
class ServeSettings:
    """The bounds and access of a server: requests in flight per replica, body size, batching, the token."""

    max_requests: int = 32
    max_body_bytes: int = 50 << 20
    max_batch_size: int = 4
    batch_wait_s: float = 0.01
    token: str | None = None
    alpha: float = 0.55  # opacity of the prediction in overlays


class Refused(Exception):
    """A request answered with a 4xx or 5xx and a one-line JSON error."""

    def __init__(self, status: int, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def image_bytes(body: bytes, content_type: str) -> bytes:
    """The encoded image of a request: the body, or the file field of a multipart form (the only field, or the
    first that names a file)."""
    if not content_type.lower().startswith("multipart/form-data"):
        return body
    header = email.message.Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise Refused(400, "a multipart body without a boundary in its Content-Type")
    fields = []  # (headers, bytes) of each part: delimited by CRLF--boundary, headers ending at a blank line
    for part in (b"\r\n" + body).split(b"\r\n--" + boundary.encode("latin-1"))[1:]:
        if part.startswith(b"--"):
            break
        head, blank, data = part.partition(b"\r\n\r\n")
        if blank:
            fields.append((head.decode("latin-1").lower(), data))
    files = [data for head, data in fields if "filename=" in head]
    if files or len(fields) == 1:
        return (files or [fields[0][1]])[0]
    raise Refused(400, "a multipart body without a file field; send the image as the body or as one file field")


class MemoryBudget:
    """Bytes of memory the requests of a replica may hold at once: a request takes its share before decoding its
    image and gives it back when answered; one that would exceed the free share waits, one that needs more than
    the whole budget is refused (413)."""

    def __init__(self, total: int) -> None:
        self.total, self.used = total, 0
        self.freed = asyncio.Condition()

    async def take(self, nbytes: int, what: str) -> None:
        if nbytes > self.total:
            raise Refused(413, f"{what} needs about {nbytes / 2**30:.1f} GiB of memory; this server takes images "
                          f"needing up to {self.total / 2**30:.1f} GiB: send a smaller one")
        async with self.freed:
            await self.freed.wait_for(lambda: self.used + nbytes <= self.total)
            self.used += nbytes

    async def give(self, nbytes: int) -> None:
        async with self.freed:
            self.used -= nbytes
            self.freed.notify_all()
