"""The JUnit reports inside a CI artifact (a zip), read in memory with bounds
(pure functions).

A zip says how large its members are, and may lie: the members are read in
chunks and counted as they inflate, so a zip bomb stops at the limit
whatever its directory claims."""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

from scheduler.ingest.errors import BodyTooLarge, IngestError, MalformedPayload
from scheduler.ingest.junit import parse_junit

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 16


@dataclass(frozen=True)
class ZipLimits:
    max_files: int = 2000
    max_total_bytes: int = 512 * 1024 * 1024  # all members inflated, together


@dataclass(frozen=True)
class Report:
    path: str  # inside the zip
    data: bytes


def _is_candidate(info: zipfile.ZipInfo) -> bool:
    name = info.filename
    base = name.rsplit("/", 1)[-1]
    return (
        not info.is_dir()
        and name.lower().endswith(".xml")
        and not name.startswith("__MACOSX/")
        and not base.startswith("._")
    )


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: int) -> bytes:
    """The member's bytes, BodyTooLarge past `budget` (counted inflated)."""
    chunks: list[bytes] = []
    size = 0
    with archive.open(info) as member:
        while chunk := member.read(CHUNK_BYTES):
            size += len(chunk)
            if size > budget:
                raise BodyTooLarge(
                    f"the artifact's reports inflate past the limit ({info.filename!r} and "
                    "the files before it)"
                )
            chunks.append(chunk)
    return b"".join(chunks)


def junit_reports(
    data: bytes, limits: ZipLimits, *, wanted: Callable[[str], bool] | None = None
) -> list[Report]:
    """Every JUnit XML file in the zip (whose path `wanted` accepts, when
    given), in the zip's order. Other files (and XML that is not a JUnit
    report) are passed over unread; a zip that is not one, or past the
    limits, is refused (MalformedPayload, BodyTooLarge)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError) as error:
        raise MalformedPayload(f"the artifact is not a zip archive: {error}") from None
    with archive:
        members = archive.infolist()
        if len(members) > limits.max_files:
            raise BodyTooLarge(
                f"the artifact holds {len(members)} files, over the limit of {limits.max_files}"
            )
        budget = limits.max_total_bytes
        reports: list[Report] = []
        for info in members:
            if not _is_candidate(info) or (wanted is not None and not wanted(info.filename)):
                continue
            if info.flag_bits & 0x1:
                log.info("artifact member %r is encrypted: passed over", info.filename)
                continue
            try:
                content = _read_member(archive, info, budget)
            except (zipfile.BadZipFile, NotImplementedError, EOFError, ValueError) as error:
                raise MalformedPayload(
                    f"the artifact's {info.filename!r} cannot be read: {error}"
                ) from None
            budget -= len(content)
            try:
                parse_junit(content, max_bytes=len(content) + 1)
            except IngestError as error:
                log.info("artifact member %r is not a JUnit report: %s", info.filename, error)
                continue
            reports.append(Report(info.filename, content))
        return reports
