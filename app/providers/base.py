"""What the job driver needs from a video provider, and the errors it may raise."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Literal, Protocol


class ProviderError(Exception):
    """A permanent failure: the job fails with this message. `status_code` is the
    provider's HTTP status when there was one (for the logs)."""

    def __init__(self, *args: object, status_code: int | None = None):
        super().__init__(*args)
        self.status_code = status_code


class TransientProviderError(ProviderError):
    """A failure worth retrying with backoff (connection, timeout, 5xx, 429)."""


class RenderLost(ProviderError):
    """A provider that renders in this process (`runs_here`) does not know the request: it
    was made by another process, or before a restart. The driver submits it again under
    the same id; only the render's own error fails a job."""


@dataclass(frozen=True)
class SubmitRequest:
    endpoint: str  # fal application id, e.g. "fal-ai/kling-video/v2.1/standard/image-to-video"
    prompt: str
    image_url: str  # https URL or a data: URI of the start image
    parameters: dict  # the template's model parameters (duration, aspect_ratio, ...)
    caption: str = ""  # short text the local renderer draws on the video
    webhook_url: str | None = None


@dataclass(frozen=True)
class ProviderStatus:
    state: Literal["queued", "processing", "completed"]
    queue_position: int | None = None
    logs: list[str] = field(default_factory=list)


class VideoProvider(Protocol):
    name: str
    # True when requests are rendered inside this process (the local renderer): the job's
    # lease then stays with the driver that submitted it, for as long as it renders.
    runs_here: bool

    async def submit(self, request: SubmitRequest, request_id: str | None = None) -> str:
        """Submit the request and return the provider's request id. `request_id` is only
        for providers that run here: render again under the id a job already has."""

    async def status(self, endpoint: str, request_id: str) -> ProviderStatus:
        """One status check. A request that completed with an error is reported here as
        "completed"; stream_result then raises ProviderError with the provider's message."""

    def stream_result(self, endpoint: str, request_id: str, max_bytes: int
                      ) -> AsyncGenerator[bytes, None]:
        """The finished video's bytes, chunk by chunk. Raises (ProviderError) before the
        first chunk when the result is not a video or declares more than `max_bytes`, and
        mid-stream as soon as more than `max_bytes` arrived. Close it (`aclosing`) when not
        read to its end."""

    async def cancel(self, endpoint: str, request_id: str) -> None:
        """Ask the provider to stop; a request that already finished is not an error."""

    async def aclose(self) -> None: ...
