"""Person segmentation backends for background variants: rembg (the study's tool) or GrabCut."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from beauty_pipeline.errors import PipelineError

SEGMENTERS = ("auto", "known", "rembg", "grabcut")


class SegmenterUnavailable(PipelineError, RuntimeError):
    """The configured segmentation backend cannot run here (e.g. rembg weights offline)."""


@dataclass(frozen=True)
class SegmenterSettings:
    """Which backend cuts the person out; rembg model by name or as a local custom ONNX file."""

    backend: str = "auto"
    rembg_model: str = "u2net_human_seg"
    rembg_model_path: str = ""


class RembgSegmenter:
    """rembg session; a local model path loads as rembg's custom IS-Net/U2-Net session."""

    name = "rembg"
    uses_face_box = False

    def __init__(self, model: str = "u2net_human_seg", model_path: str = "", threads: int = 0):
        try:
            import onnxruntime
            import rembg
        except ImportError as error:  # pragma: no cover - rembg is a hard dependency
            raise SegmenterUnavailable(f"rembg is not importable: {error}") from error
        self.spec = ("rembg", model, model_path)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads  # 1 per pool worker; 0 = onnxruntime's default
        if model_path:
            path = Path(model_path).expanduser().resolve()
            if not path.is_file():
                raise SegmenterUnavailable(f"rembg model file not found: {path}")
            kind = "u2net_custom" if "u2net" in path.name.lower() else "dis_custom"
            digest = file_digest(path)
            self.model_file = inside_rembg_home(path, digest)  # what rembg opens: this file
            try:
                self.session = rembg.new_session(kind, model_path=str(self.model_file),
                                                 sess_opts=options)
                rembg.remove(np.zeros((32, 32, 3), np.uint8), session=self.session,
                             only_mask=True)  # a different network fails here, not per image
            except Exception as error:  # onnxruntime raises its own types for a bad model file
                raise SegmenterUnavailable(
                    f"rembg model file {path} cannot be loaded ({type(error).__name__}: "
                    f"{str(error).splitlines()[0][:120]}); set rembg_model_path to a valid "
                    "U2-Net / IS-Net ONNX file") from error
            self.detail = f"{kind}:{path.name}"
            self.cache_id = f"rembg-{rembg.__version__}:{kind}:sha256={digest}"
        else:
            self.cache_id = f"rembg-{rembg.__version__}:{model}"
            try:
                self.session = rembg.new_session(model, sess_opts=options)
            except Exception as error:
                cause = str(error).splitlines()[0][:100] if str(error) else ""
                raise SegmenterUnavailable(
                    f"rembg could not load model {model!r} ({error.__class__.__name__}: {cause}). "
                    "Offline? Use the GrabCut segmenter (--segmenter grabcut; segmenter 'grabcut' "
                    "in the asset config), or a local U2-Net / IS-Net ONNX file "
                    "(--rembg-model-path FILE; rembg_model_path), or download the model once "
                    "with network access"
                ) from error
            self.detail = model
        self._remove = rembg.remove

    def mask(self, image: np.ndarray, face_box=None) -> np.ndarray:
        out = self._remove(image, session=self.session, only_mask=True)
        return np.asarray(out, dtype=np.uint8)


class GrabCutSegmenter:
    """Offline classical fallback: OpenCV GrabCut seeded with the face box as sure foreground."""

    name = "grabcut"
    detail = "opencv-grabcut"
    uses_face_box = True

    def __init__(self, iterations: int = 4):
        self.iterations = iterations
        self.spec = ("grabcut", iterations)
        self.cache_id = f"grabcut:iterations={iterations}:opencv-{cv2.__version__}"

    def mask(self, image: np.ndarray, face_box=None) -> np.ndarray:
        cv2.setRNGSeed(0)  # GrabCut's k-means draws from OpenCV's RNG: same image, same mask
        height, width = image.shape[:2]
        labels = np.full((height, width), cv2.GC_PR_BGD, np.uint8)
        if face_box is not None and not np.any(np.isnan(face_box)):
            x0, y0, x1, y1 = face_box
            fw, fh = x1 - x0, y1 - y0
            # the person probably spans the face widened down to the bottom edge (shoulders)
            px0, px1 = int(max(0, x0 - 1.2 * fw)), int(min(width, x1 + 1.2 * fw))
            labels[int(max(0, y0 - 0.4 * fh)):, px0:px1] = cv2.GC_PR_FGD
            labels[int(y0 + 0.15 * fh):int(y1 - 0.1 * fh), int(x0 + 0.2 * fw):int(x1 - 0.2 * fw)] = (
                cv2.GC_FGD)
        else:
            labels[height // 5:, width // 5:4 * width // 5] = cv2.GC_PR_FGD
        labels[:max(1, height // 32), :] = cv2.GC_BGD
        labels[:, :max(1, width // 32)] = cv2.GC_BGD
        labels[:, -max(1, width // 32):] = cv2.GC_BGD
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.grabCut(np.ascontiguousarray(image[..., ::-1]), labels, None, bgd, fgd,
                    self.iterations, cv2.GC_INIT_WITH_MASK)
        foreground = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
        return foreground.astype(np.uint8) * 255


def segmenter_from_spec(spec: tuple, threads: int = 0):
    """Rebuild a segmenter from its `spec` (in a pool worker: one session per process)."""
    if spec[0] == "rembg":
        return RembgSegmenter(spec[1], spec[2], threads=threads)
    if spec[0] == "grabcut":
        return GrabCutSegmenter(spec[1])
    raise ValueError(f"unknown segmenter spec {spec!r}")


def file_digest(path: Path) -> str:
    """First 16 hex digits of a model file's sha256: a different file gives different masks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def rembg_home() -> Path:
    """rembg's model folder (U2NET_HOME when set): the only place it loads custom models from."""
    from rembg.sessions.base import BaseSession

    return Path(BaseSession.rembg_home()).expanduser().absolute()


def inside_rembg_home(path: Path, digest: str) -> Path:
    """rembg loads custom models only from its home: link the file in under custom/<sha256>/, so
    another file of the same name there is never loaded instead; refuse one that still differs."""
    home = rembg_home()
    if path.is_relative_to(home):
        return path
    link = home / "custom" / digest / path.name
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() and link.resolve() != path:
        link.unlink()
    if not link.exists():
        link.symlink_to(path)
    found = file_digest(link)
    if found != digest:
        raise SegmenterUnavailable(
            f"rembg_model_path {path} (sha256 {digest}...) would load as {link}, a different file "
            f"of the same name in rembg's model folder (sha256 {found}...); remove {link}")
    return link


def rembg_model_cached(model: str) -> bool:
    """Whether rembg's weights are already on disk, so 'auto' never waits on a download."""
    legacy = Path(os.environ.get("U2NET_HOME", Path.home() / ".u2net")).expanduser()
    candidates = (legacy / f"{model}.onnx", rembg_home() / "models" / model / f"{model}.onnx")
    return any(path.is_file() for path in candidates)


def make_segmenter(settings: SegmenterSettings):
    """Build the configured backend; 'auto' means rembg when it loads, else GrabCut."""
    if settings.backend == "rembg":
        return RembgSegmenter(settings.rembg_model, settings.rembg_model_path)
    if settings.backend == "grabcut":
        return GrabCutSegmenter()
    if settings.backend in ("auto", "known"):
        if settings.rembg_model_path or rembg_model_cached(settings.rembg_model):
            return RembgSegmenter(settings.rembg_model, settings.rembg_model_path)
        return GrabCutSegmenter()
    raise ValueError(f"unknown segmenter {settings.backend!r}; expected one of {SEGMENTERS}")
