"""Photo sources for celebrity_photos: Bing (hardened downloads) or a local folder per person."""

from __future__ import annotations

import html
import os
import re
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import pandas as pd
import requests

from beauty_pipeline.netio import NetworkError, guarded_get, private_hosts_allowed, read_body
from beauty_pipeline.ranking import check_person_key, person_key
from beauty_pipeline.storage import ImageStore, sha256_bytes
from beauty_pipeline.vision.decode import (
    DEFAULT_MAX_PIXELS,
    SUFFIXES,
    ImageDecodeError,
    decode_image,
)

PROVENANCE_COLUMNS = ["url", "bytes", "sha256", "fetched_at", "outcome", "reason", "image_key"]
OUTCOMES = ("ok", "failed", "skipped_known")
USER_AGENT = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/124.0 Safari/537.36")
# bing-image-downloader's way of reading a result page: the full-size image URL is the
# HTML-escaped "murl" field of each result's JSON attribute.
_MURL = re.compile(r"murl&quot;:&quot;(.*?)&quot;")


class PhotoSource(Protocol):
    """Finds a person's photos and stores them; one provenance row per candidate."""

    kind: str

    def fetch(self, person: str, name: str, store: ImageStore,
              known: pd.DataFrame | None = None) -> pd.DataFrame: ...


class DownloadError(Exception):
    """A download that failed; `reason` is what the provenance row records."""

    def __init__(self, reason: str, transient: bool = False, url: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.url = url


@dataclass(frozen=True)
class Downloaded:
    """A downloaded, fully decoded image and the suffix its format gets in the store."""

    data: bytes
    suffix: str


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _row(url: str, outcome: str, reason: str = "", data: bytes = b"", key: str = "") -> dict:
    return {"url": url, "bytes": len(data), "sha256": sha256_bytes(data) if data else "",
            "fetched_at": _now(), "outcome": outcome, "reason": reason, "image_key": key}


def validate_image_bytes(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> str:
    """Decode completely (never trust names or headers); return the store suffix."""
    _, fmt = decode_image(data, max_pixels)
    return SUFFIXES[fmt]


def _fetch_once(session: requests.Session, url: str, timeout: float, max_bytes: int,
                allow_private: bool = False) -> bytes:
    """One GET with a streaming size cap, a whole-download deadline and a host check per hop."""
    deadline = time.monotonic() + timeout
    try:
        with guarded_get(session, url, timeout, allow_private) as response:
            if response.status_code >= 500 or response.status_code == 429:
                raise DownloadError(f"HTTP {response.status_code}", transient=True)
            if response.status_code >= 400:
                raise DownloadError(f"HTTP {response.status_code}")
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise DownloadError(f"too large: Content-Length {declared} > {max_bytes} bytes")
            return read_body(response, max_bytes, deadline, "download")
    except NetworkError as error:
        raise DownloadError(str(error), transient=error.transient) from error
    except requests.Timeout as error:
        raise DownloadError(f"timeout: {type(error).__name__}", transient=True) from error
    except requests.ConnectionError as error:
        raise DownloadError(f"connection error: {error}", transient=True) from error
    except requests.RequestException as error:
        raise DownloadError(f"request failed: {type(error).__name__}: {error}") from error


def download_image(url: str, *, session: requests.Session | None = None, timeout: float = 15.0,
                   max_bytes: int = 15_000_000, retries: int = 3, backoff: float = 0.5,
                   max_pixels: int = DEFAULT_MAX_PIXELS,
                   allow_private: bool | None = None) -> Downloaded:
    """Download one image with limits, retrying transient failures with exponential backoff."""
    if allow_private is None:
        allow_private = private_hosts_allowed()
    if urllib.parse.urlsplit(url).scheme.lower() not in ("http", "https"):
        raise DownloadError(f"unsupported URL scheme in {url[:80]!r}")
    session = session or _session()
    for attempt in range(retries + 1):
        try:
            data = _fetch_once(session, url, timeout, max_bytes, allow_private)
            break
        except DownloadError as error:
            if not error.transient or attempt == retries:
                if error.transient and retries:
                    raise DownloadError(f"{error.reason} (after {retries + 1} attempts)",
                                        True) from error
                raise
            time.sleep(backoff * 2 ** attempt)
    try:
        return Downloaded(data, validate_image_bytes(data, max_pixels))
    except ImageDecodeError as error:
        raise DownloadError(str(error)) from error


def _session() -> requests.Session:
    session = requests.Session()
    session.headers.update({"User-Agent": USER_AGENT, "Accept": "image/*,*/*;q=0.8"})
    return session


def _carry_known(known: pd.DataFrame | None, store: ImageStore) -> tuple[list[dict], set[str]]:
    """Previous rows for reuse: images still in the store become skipped_known; failures stay."""
    if known is None or known.empty:
        return [], set()
    rows, urls = [], set()
    for record in known.to_dict("records"):
        url = str(record.get("url", ""))
        if not url or url in urls:
            continue
        key = str(record.get("image_key") or "")
        if record.get("outcome") in ("ok", "skipped_known") and key and store.exists(key):
            rows.append({**{c: record.get(c, "") for c in PROVENANCE_COLUMNS},
                         "outcome": "skipped_known", "reason": ""})
            urls.add(url)
        elif record.get("outcome") == "failed":
            rows.append({c: record.get(c, "") for c in PROVENANCE_COLUMNS})
            urls.add(url)
    return rows, urls


def _frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=PROVENANCE_COLUMNS)
    return frame.astype({"bytes": "int64"}) if len(frame) else frame


class BingSource:
    """Bing image search as bing-image-downloader queries it, with our own hardened downloads."""

    kind = "bing"

    def __init__(self, limit: int = 60, extra_terms: str = "", adult_filter: bool = True,
                 timeout: float = 15.0, max_bytes: int = 15_000_000, retries: int = 3,
                 base_url: str = "https://www.bing.com", backoff: float = 0.5,
                 max_pages: int = 5, max_pixels: int = DEFAULT_MAX_PIXELS,
                 retry_failed: bool = False, allow_private: bool | None = None):
        self.allow_private = private_hosts_allowed() if allow_private is None else allow_private
        self.limit, self.extra_terms, self.adult_filter = limit, extra_terms, adult_filter
        self.timeout, self.max_bytes, self.retries = timeout, max_bytes, retries
        self.base_url, self.backoff, self.max_pages = base_url.rstrip("/"), backoff, max_pages
        self.max_pixels, self.retry_failed = max_pixels, retry_failed

    def query(self, name: str) -> str:
        return " ".join(part for part in (name, self.extra_terms) if part).strip()

    def page_url(self, query: str, first: int) -> str:
        """The result-page request bing-image-downloader makes (images/async, same parameters)."""
        params = {"q": query, "first": first, "count": self.limit,
                  "adlt": "strict" if self.adult_filter else "off", "qft": "+filterui:photo-photo"}
        return f"{self.base_url}/images/async?{urllib.parse.urlencode(params)}"

    def candidates(self, query: str, session: requests.Session) -> Iterator[str]:
        """Full-size image URLs, page by page, until a page is empty or brings nothing new."""
        seen: set[str] = set()
        for page in range(self.max_pages):
            url = self.page_url(query, page * self.limit)
            try:
                text = _fetch_once(session, url, self.timeout, 10_000_000,
                                   self.allow_private).decode(
                    "utf-8", errors="replace")
            except DownloadError as error:
                raise DownloadError(f"search page failed: {error.reason}", url=url) from error
            links = [html.unescape(link).replace(" ", "%20") for link in _MURL.findall(text)]
            new = [link for link in dict.fromkeys(links) if link not in seen]
            if not new:
                return
            seen.update(new)
            yield from new

    def fetch(self, person: str, name: str, store: ImageStore,
              known: pd.DataFrame | None = None) -> pd.DataFrame:
        """Reuse what a previous run stored, then download new results up to the limit."""
        rows, known_urls = _carry_known(known, store)
        if self.retry_failed:
            rows = [r for r in rows if r["outcome"] != "failed"]
            known_urls = {r["url"] for r in rows}
        have = sum(r["outcome"] != "failed" for r in rows)
        if have >= self.limit:
            return _frame(rows)
        session = _session()
        query = self.query(name)
        try:
            for url in self.candidates(query, session):
                if have >= self.limit:
                    break
                if url in known_urls:
                    continue
                known_urls.add(url)
                rows.append(self._download(url, store, session))
                have += rows[-1]["outcome"] == "ok"
        except DownloadError as error:
            rows.append(_row(error.url or self.page_url(query, 0), "failed", error.reason))
        return _frame(rows)

    def _download(self, url: str, store: ImageStore, session: requests.Session) -> dict:
        try:
            image = download_image(url, session=session, timeout=self.timeout,
                                   max_bytes=self.max_bytes, retries=self.retries,
                                   backoff=self.backoff, max_pixels=self.max_pixels,
                                   allow_private=self.allow_private)
        except DownloadError as error:
            return _row(url, "failed", error.reason)
        return _row(url, "ok", data=image.data, key=store.put_bytes(image.data, image.suffix))


def _refusal(path: Path, root: Path) -> str:
    """Why a file under the photo folder is not read ('' when it may be)."""
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return "broken or looping symlink"
    if not target.is_relative_to(root):
        return "symlink to a file outside the photo folder: refused"
    if not target.is_file():
        return "not a regular file"
    return ""


class LocalFolderSource:
    """Offline replay: photos from a folder per person (named by key or by the person's name)."""

    kind = "local"

    def __init__(self, root: str | Path, max_bytes: int = 50_000_000,
                 max_pixels: int = DEFAULT_MAX_PIXELS):
        self.root = Path(root).expanduser()
        self.max_bytes, self.max_pixels = max_bytes, max_pixels

    def folder(self, person: str, name: str = "") -> Path | None:
        """root/<person>, else the one sub-folder whose name gives the same key as the person."""
        check_person_key(person)
        root = self.root.resolve()
        direct = root / person
        if direct.is_dir() and direct.resolve().is_relative_to(root):
            return direct
        wanted = {person, person_key(name)} if name else {person}
        matches = sorted(child for child in root.iterdir() if child.is_dir()
                         and person_key(child.name.replace("_", " ")) in wanted)
        matches = [m for m in matches if m.resolve().is_relative_to(root)]
        return matches[0] if matches else None

    def fetch(self, person: str, name: str, store: ImageStore,
              known: pd.DataFrame | None = None) -> pd.DataFrame:
        """One row per file in the person's folder; unchanged files already stored are reused."""
        if not self.root.is_dir():
            return _frame([_row(self.root.as_uri() if self.root.is_absolute() else str(self.root),
                                "failed", f"local photo folder {self.root} does not exist")])
        folder = self.folder(person, name)
        if folder is None:
            return _frame([_row(self.root.resolve().as_uri(), "failed",
                                f"no folder for {name or person!r} ({person}) under {self.root}")])
        previous = {} if known is None or known.empty else {
            r["url"]: r for r in known.to_dict("records")
            if r.get("outcome") in ("ok", "skipped_known")}
        rows = []
        for path, refusal in self.entries(folder):
            if refusal:
                rows.append(_row(path.as_uri(), "failed", refusal))
            else:
                rows.append(self._read(path, store, previous.get(path.as_uri())))
        return _frame(rows)

    def entries(self, folder: Path) -> list[tuple[Path, str]]:
        """Every file under the folder, sub-folders included: (path, '' or why it is not read).

        Hidden names (.DS_Store, .git) are skipped; a link that leads outside the photo root,
        a linked folder, a special file or an empty folder gets a reason instead of being read."""
        root = self.root.resolve()
        found: list[tuple[Path, str]] = []
        for current, folders, files in os.walk(folder, followlinks=False):
            here = Path(current)
            folders[:] = sorted(f for f in folders if not f.startswith("."))
            visible = sorted(f for f in files if not f.startswith("."))
            for name in folders:
                if (here / name).is_symlink():
                    found.append((here / name, "symlinked folder, not followed: put the photos "
                                               "in the folder itself"))
            if not visible and not folders and here != Path(folder):
                found.append((here, "empty sub-folder: nothing to read"
                              + (" (a folder named like an image file)"
                                 if here.suffix.lower().lstrip(".") in SUFFIXES.values() else "")))
            for name in visible:
                found.append((here / name, _refusal(here / name, root)))
        return sorted(found)

    def _read(self, path: Path, store: ImageStore, before: dict | None) -> dict:
        url = path.as_uri()
        path = path.resolve()  # checked to stay inside the photo root by entries()
        try:
            if path.stat().st_size > self.max_bytes:
                return _row(url, "failed", f"too large: more than {self.max_bytes} bytes")
            data = path.read_bytes()
        except OSError as error:
            return _row(url, "failed", f"unreadable: {error}")
        digest = sha256_bytes(data)
        if before and before.get("sha256") == digest and store.exists(str(before["image_key"])):
            return {**_row(url, "skipped_known", data=data), "image_key": before["image_key"],
                    "fetched_at": before.get("fetched_at", _now())}
        try:
            suffix = validate_image_bytes(data, self.max_pixels)
        except ImageDecodeError as error:
            return _row(url, "failed", str(error), data=data)
        return _row(url, "ok", data=data, key=store.put_bytes(data, suffix))
